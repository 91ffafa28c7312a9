#!/usr/bin/env python3
"""Build the vcluster control-plane image, offline: FROM scratch + static binaries.

    nice -n 19 python images/control-plane/build.py [--k8s-version 1.37] [--cache-dir DIR]
        [--force] [--print-tag]

The image holds kube-apiserver and kube-controller-manager (the requested Kubernetes version),
etcd (``pytest_vcluster.versions.ETCD``), all resolved by ``BinaryResolver`` from the cache
(``~/.cache/pytest-vcluster/bin``), and ``entrypoint`` (``entrypoint/main.go``, standard
library only, built here with ``CGO_ENABLED=0``) that runs them in order and forwards SIGTERM.
The image is written as a ``docker save`` tarball and loaded with ``docker load``: no Dockerfile,
no registry, no base image.

The tag is ``pytest-vcluster/control-plane:v<k8s>-<hash>``; the hash covers this directory and
the binaries, so an unchanged recipe finds its image in Docker and the build is skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from pytest_vcluster.binaries import BinaryResolver, default_cache_dir, sha256_file
from pytest_vcluster.docker import Docker, ensure_docker
from pytest_vcluster.errors import VClusterError
from pytest_vcluster.scripts import load_script
from pytest_vcluster.versions import K8sVersion, parse_k8s_version

HERE = Path(__file__).resolve().parent
REPO = "pytest-vcluster/control-plane"
TOOLS = ("kube-apiserver", "kube-controller-manager", "etcd")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def kind_node_build() -> ModuleType:
    """``images/kind-node/build.py`` (its docker-archive writer is reused here)."""
    return load_script(HERE.parent / "kind-node" / "build.py", "pytest_vcluster_kind_node_build")


def recipe_hash() -> str:
    h = hashlib.sha256()
    for p in sorted(HERE.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".md":
            h.update(p.relative_to(HERE).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def write_archive(kn: ModuleType, spec: object, out: Path) -> None:
    """``docker save`` format, one layer, like kind-node's writer but with a ``created`` time:
    the plugin picks the newest local image by creation time, and images of older recipes
    (whose entrypoint may lack flags the chart now passes) must not tie with this one."""
    import io
    import json
    import tarfile
    import time

    layer = kn.layer_tar(spec)
    diff_id = hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {"Env": list(spec.env), "Entrypoint": list(spec.entrypoint) or None},  # type: ignore[attr-defined]
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created_by": "pytest-vcluster images/control-plane/build.py"}],
    }
    cfg = json.dumps(config, sort_keys=True).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    manifest = [{"Config": cfg_name, "RepoTags": [spec.tag], "Layers": [f"{diff_id}/layer.tar"]}]  # type: ignore[attr-defined]
    with tarfile.open(out, "w") as tar:
        for name, data in (
            (f"{diff_id}/layer.tar", layer),
            (cfg_name, cfg),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            tar.addfile(kn._tar_info(name, mode=0o644, size=len(data)), io.BytesIO(data))


class ControlPlaneImage:
    def __init__(
        self,
        k8s: K8sVersion,
        cache_dir: Path | None = None,
        *,
        docker: Docker | None = None,
        progress: object = _stderr,
    ) -> None:
        self.k8s = k8s
        self.cache_dir = (cache_dir or default_cache_dir()).expanduser()
        self.work = self.cache_dir / "images" / "control-plane"
        self.progress = progress if callable(progress) else _stderr
        self._docker = docker
        self.resolver = BinaryResolver(k8s, self.cache_dir, progress=self.progress)

    @property
    def docker(self) -> Docker:
        if self._docker is None:
            self._docker = ensure_docker(start=True, cache_dir=self.cache_dir)
        return self._docker

    def binaries(self) -> dict[str, Path]:
        return {t: self.resolver.resolve(t).path for t in TOOLS}

    def tag(self, bins: dict[str, Path] | None = None) -> str:
        bins = bins or self.binaries()
        parts = [recipe_hash()] + [f"{t}={sha256_file(bins[t])}" for t in TOOLS]
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]
        return f"{REPO}:{self.k8s.tag}-{digest}"

    def entrypoint(self) -> Path:
        src = HERE / "entrypoint"
        digest = hashlib.sha256(
            b"".join(p.read_bytes() for p in sorted(src.glob("*")) if p.is_file())
        ).hexdigest()[:12]
        out = self.work / f"entrypoint-{digest}" / "entrypoint"
        if out.is_file():
            return out
        go = shutil.which("go")
        if go is None:
            raise VClusterError("building the control-plane entrypoint needs Go on PATH")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(".entrypoint.tmp")
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false", GOTOOLCHAIN="local")
        subprocess.run(
            ["nice", "-n", "19", go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "."],
            cwd=src,
            env=env,
            check=True,
        )
        os.replace(tmp, out)
        return out

    def build(self, *, force: bool = False) -> tuple[str, bool]:
        bins = self.binaries()
        tag = self.tag(bins)
        if not force and self.docker.image_exists(tag):
            return tag, False
        kn = kind_node_build()
        files = {f"/usr/local/bin/{t}": bins[t] for t in TOOLS}
        files["/usr/local/bin/entrypoint"] = self.entrypoint()
        spec = kn.ImageSpec(
            tag,
            files,
            entrypoint=("/usr/local/bin/entrypoint",),
            dirs=("tmp", "data", "pki", "var/run/kubernetes"),
        )
        self.work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            archive = Path(tmp) / "image.tar"
            write_archive(kn, spec, archive)
            self.progress(f"control-plane: docker load {tag}")
            self.docker.run(["load", "-i", str(archive)], timeout=600)
        return tag, True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--k8s-version", default=None, help="Kubernetes version (default: newest)")
    p.add_argument("--cache-dir", default=None, help=f"cache (default {default_cache_dir()})")
    p.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    p.add_argument("--print-tag", action="store_true", help="print the image tag and exit")
    args = p.parse_args(argv)
    image = ControlPlaneImage(
        parse_k8s_version(args.k8s_version), Path(args.cache_dir) if args.cache_dir else None
    )
    try:
        if args.print_tag:
            print(image.tag())
            return 0
        tag, built = image.build(force=args.force)
    except (VClusterError, subprocess.CalledProcessError) as exc:
        print(f"control-plane: build failed: {exc}", file=sys.stderr)
        return 1
    print(f"{tag} ({'built' if built else 'exists'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
