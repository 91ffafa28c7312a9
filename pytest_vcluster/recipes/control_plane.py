"""The vcluster control-plane image: FROM scratch + static binaries, offline.

The image holds kube-apiserver and kube-controller-manager (the requested Kubernetes version),
etcd (``pytest_vcluster.versions.ETCD``), CoreDNS (``versions.COREDNS``: the chart runs it in
the vcluster's pod, ``coredns.embedded``), all resolved by ``BinaryResolver`` from the cache
(downloaded or built), and ``entrypoint`` (``entrypoint/main.go`` here, standard library only)
that runs them in order and forwards SIGTERM. The entrypoint is built with the host's Go where
there is one, else inside Docker from a Go image (``PYTEST_VCLUSTER_GO_IMAGE``, default
``golang:<this Go's minor>``: the path of a machine with internet and no Go). The image is
written as a ``docker save`` tarball and loaded with ``docker load``. On Linux it also carries
an etcd template (``etcd_template.py``): the bootstrap RBAC its API server would otherwise
create at every start.

The tag is ``pytest-vcluster/control-plane:v<k8s>-<hash>``; the hash covers this recipe and
the binaries, so an unchanged recipe finds its image in Docker and the build is skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..binaries import BinaryResolver, default_cache_dir, sha256_file
from ..docker import Docker, ensure_docker
from ..errors import VClusterError
from ..versions import K8sVersion
from . import archive, etcd_template

HERE = Path(__file__).resolve().parent
ENTRYPOINT_SRC = HERE / "entrypoint"
REPO = "pytest-vcluster/control-plane"
TOOLS = ("kube-apiserver", "kube-controller-manager", "etcd", "coredns")
GO_IMAGE_ENV = "PYTEST_VCLUSTER_GO_IMAGE"
GO_IMAGE = "golang:1.24"  # the entrypoint needs nothing newer (go.mod: go 1.22)


def _source_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.relative_to(HERE).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def recipe_hash() -> str:
    files = [Path(__file__).resolve(), HERE / "etcd_template.py", *sorted(ENTRYPOINT_SRC.glob("*"))]
    return _source_hash([p for p in files if p.is_file()])


def go_image(
    which: Callable[[str], str | None] = shutil.which, env: Mapping[str, str] = os.environ
) -> str | None:
    """The Go image the entrypoint is built in: the named one, else none where this machine
    has Go, else ``golang:1.24``."""
    return env.get(GO_IMAGE_ENV) or (None if which("go") else GO_IMAGE)


class ControlPlaneImage:
    def __init__(
        self,
        k8s: K8sVersion,
        cache_dir: Path | None = None,
        *,
        docker: Docker | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.k8s = k8s
        self.cache_dir = (cache_dir or default_cache_dir()).expanduser()
        self.work = self.cache_dir / "images" / "control-plane"
        self.progress = progress or _stderr
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
        parts = [recipe_hash(), f"template={etcd_template.supported()}"]
        parts += [f"{t}={sha256_file(bins[t])}" for t in TOOLS]
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]
        return f"{REPO}:{self.k8s.tag}-{digest}"

    def etcd_template(self, tag: str, bins: dict[str, Path]) -> Path | None:
        """The etcd data directory the image ``tag`` starts from (made once per tag: per
        recipe and binaries), or None where it cannot be made here."""
        if not etcd_template.supported():
            return None
        out = self.work / f"etcd-template-{tag.rsplit('-', 1)[-1]}"
        if not (out / "member").is_dir():
            self.work.mkdir(parents=True, exist_ok=True)
            self.progress("control-plane: making the etcd template (etcd + kube-apiserver, ~5 s)")
            etcd_template.make(out, bins, self.progress)
        return out

    def entrypoint(self) -> Path:
        """The entrypoint binary, built once per source (cached by its hash)."""
        digest = _source_hash(sorted(p for p in ENTRYPOINT_SRC.glob("*") if p.is_file()))[:12]
        out = self.work / f"entrypoint-{digest}" / "entrypoint"
        if out.is_file():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(".entrypoint.tmp")
        image = go_image()
        if image is None:
            go = shutil.which("go") or "go"
            env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false", GOTOOLCHAIN="local")
            build = [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "."]
            subprocess.run(
                ["nice", "-n", "19", *build],
                cwd=ENTRYPOINT_SRC,
                env=env,
                check=True,
            )
        else:
            self._build_in_docker(tmp, image)
        os.replace(tmp, out)
        return out

    def _build_in_docker(self, out: Path, image: str) -> None:
        """``go build`` in a Go image (no Go here): the sources mounted read-only, the binary
        written to ``out``'s directory, as this user."""
        self.progress(f"control-plane: no Go here: building the entrypoint in {image}")
        script = "cp -r /src /tmp/src && cd /tmp/src && "
        script += f"go build -trimpath -ldflags='-s -w' -o /out/{out.name} ."
        proc = self.docker.run(
            [
                "run", "--rm", "--network=none", "--user", f"{os.getuid()}:{os.getgid()}",
                "-e", "CGO_ENABLED=0", "-e", "GOFLAGS=-buildvcs=false",
                "-e", "GOCACHE=/tmp/gocache", "-e", "GOTOOLCHAIN=local",
                "-v", f"{ENTRYPOINT_SRC}:/src:ro", "-v", f"{out.parent}:/out",
                image, "sh", "-c", script,
            ],
            timeout=900,
            check=False,
        )  # fmt: skip
        if proc.returncode != 0 or not out.is_file():
            err = proc.stderr.decode(errors="replace").strip()[-2000:]
            raise VClusterError(
                f"building the control-plane entrypoint in {image} failed: {err} (install Go, "
                f"or name a Go image Docker can pull or has with {GO_IMAGE_ENV})"
            )

    def build(self, *, force: bool = False) -> tuple[str, bool]:
        bins = self.binaries()
        tag = self.tag(bins)
        if not force and self.docker.image_exists(tag):
            return tag, False
        files = {f"/usr/local/bin/{t}": bins[t] for t in TOOLS}
        files["/usr/local/bin/entrypoint"] = self.entrypoint()
        template = self.etcd_template(tag, bins)
        if template is not None:
            for f in sorted(p for p in template.rglob("*") if p.is_file()):
                files[f"{etcd_template.IMAGE_PATH}/{f.relative_to(template).as_posix()}"] = f
        spec = archive.ImageSpec(
            tag,
            files,
            entrypoint=("/usr/local/bin/entrypoint",),
            dirs=("tmp", "data", "pki", "var/run/kubernetes"),
        )
        self.work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            image = Path(tmp) / "image.tar"
            # A creation time: a kubeconfig host without named images takes the newest local
            # one (hosts/incluster/chart.newest_local_image).
            archive.write_docker_archive(
                [spec],
                image,
                created_by="pytest-vcluster control-plane recipe",
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            self.progress(f"control-plane: docker load {tag}")
            self.docker.run(["load", "-i", str(image)], timeout=600)
        return tag, True


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
