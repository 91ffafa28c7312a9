#!/usr/bin/env python3
"""Build the syncer image, offline apart from the Debian mirror and the Python index.

    nice -n 19 python images/syncer/build.py [--cache-dir DIR] [--force] [--print-tag]

1. Root filesystem: ``debootstrap --variant=minbase bookworm`` with ``python3`` and
   ``ca-certificates`` (cached as a directory under ``<cache>/images/syncer/``, slimmed).
2. Python packages: wheels built on the host (``pip wheel``: this project without its
   dependencies, and what the syncer imports — ``kubernetes``, ``cryptography`` (pod
   certificates) — at the versions installed here with their dependencies), then
   ``pip install --target`` into ``/opt/syncer`` with wheels for bookworm's python3 (3.11),
   whichever Python runs this build (``target_interpreter``).
3. ``docker import`` of rootfs + packages with ``ENTRYPOINT ["python3", "-m", "syncer"]``,
   ``PYTHONPATH=/opt/syncer`` and user 65532.

The tag is ``pytest-vcluster/syncer:<hash>``; the hash covers this directory, the syncer's
sources, ``pyproject.toml`` and those versions, so an unchanged recipe is found in
Docker and the build is skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pytest_vcluster.binaries import arch, default_cache_dir
from pytest_vcluster.docker import Docker, ensure_docker
from pytest_vcluster.errors import VClusterError
from pytest_vcluster.rootfs import SLIM_PATHS, debootstrap_rootfs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REPO = "pytest-vcluster/syncer"
SUITE = "bookworm"
PYTHON_ABI = (3, 11)  # bookworm's python3
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "ca-certificates")
SYNCER_PACKAGES = ("kubernetes", "cryptography")  # the syncer's imports besides the stdlib
CHANGES = (
    "ENV PYTHONPATH=/opt/syncer",
    "ENV PYTHONUNBUFFERED=1",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "USER 65532",
    'ENTRYPOINT ["python3", "-m", "syncer"]',
)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def source_files() -> list[Path]:
    files = [p for p in sorted(HERE.rglob("*")) if p.is_file() and p.suffix != ".md"]
    files += [*sorted((ROOT / "syncer").rglob("*.py")), ROOT / "pyproject.toml"]
    return [p for p in files if "__pycache__" not in p.parts]


def target_interpreter() -> list[str]:
    """pip options selecting wheels for the image's Python, not the one running this."""
    major, minor = PYTHON_ABI
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch(), arch())
    tags = [f"manylinux{v}_{machine}" for v in ("2014", "_2_17", "_2_28")]
    out = ["--python-version", f"{major}.{minor}", "--implementation", "cp"]
    out += [arg for abi in (f"cp{major}{minor}", "abi3", "none") for arg in ("--abi", abi)]
    out += [arg for tag in tags for arg in ("--platform", tag)]
    return [*out, "--only-binary=:all:"]


class SyncerImage:
    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        docker: Docker | None = None,
        mirror: str | None = None,
    ) -> None:
        self.cache_dir = (cache_dir or default_cache_dir()).expanduser()
        self.work = self.cache_dir / "images" / "syncer"
        self.mirror = mirror or os.environ.get("PYTEST_VCLUSTER_DEBIAN_MIRROR") or DEFAULT_MIRROR
        self._docker = docker

    @property
    def docker(self) -> Docker:
        if self._docker is None:
            self._docker = ensure_docker(start=True, cache_dir=self.cache_dir)
        return self._docker

    @property
    def kubernetes_version(self) -> str:
        return importlib.metadata.version("kubernetes")

    @staticmethod
    def requirements() -> list[str]:
        """What the syncer imports, pinned at the versions installed here."""
        return [f"{name}=={importlib.metadata.version(name)}" for name in SYNCER_PACKAGES]

    def tag(self) -> str:
        parts: list[str | bytes] = [SUITE, *PACKAGES, *self.requirements()]
        for p in source_files():
            parts += [p.relative_to(ROOT).as_posix(), p.read_bytes()]
        return f"{REPO}:{_digest(*parts)[:12]}"

    # -- steps ------------------------------------------------------------------------------
    def rootfs(self) -> Path:
        root = self.work / f"rootfs-{SUITE}-{_digest(SUITE, *PACKAGES, *SLIM_PATHS)[:10]}"
        _stderr(f"syncer: root filesystem {root}")
        return debootstrap_rootfs(
            root,
            suite=SUITE,
            packages=PACKAGES,
            mirror=self.mirror,
            slim_paths=SLIM_PATHS,
            log=self.work / "debootstrap.log",
            purpose="the syncer image",
            prefix=("nice", "-n", "19"),
        )

    def site_packages(self, dest: Path) -> None:
        """This project's wheel and the syncer's dependencies for the image's interpreter
        (bookworm's CPython 3.11), installed into ``dest`` (which becomes /opt/syncer) by the
        host's pip whatever Python runs it: binary wheels for that interpreter and platform
        (``--python-version``/``--abi``/``--platform``), nothing compiled here."""
        wheels = dest.parent / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        nice = ["nice", "-n", "19"]
        leftover = not (ROOT / "build").exists()  # setuptools builds in the source tree
        subprocess.run(
            [*nice, *pip, "wheel", "--no-deps", "-w", str(wheels), "."],
            cwd=ROOT,
            check=True,
        )
        if leftover:
            shutil.rmtree(ROOT / "build", ignore_errors=True)
        ours = next(wheels.glob("pytest_vcluster-*.whl"))  # pure Python: any interpreter
        install = [*nice, *pip, "install", "--target", str(dest), "--no-warn-script-location"]
        install += target_interpreter()
        subprocess.run([*install, *self.requirements()], check=True)
        subprocess.run([*install, "--no-deps", str(ours)], check=True)
        shutil.rmtree(dest / "bin", ignore_errors=True)

    def build(self, *, force: bool = False) -> tuple[str, bool]:
        tag = self.tag()
        if not force and self.docker.image_exists(tag):
            return tag, False
        rootfs = self.rootfs()
        self.work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            stage = Path(tmp) / "stage"
            self.site_packages(stage / "opt" / "syncer")
            tar = subprocess.Popen(
                [
                    "tar",
                    "--numeric-owner",
                    "--exclude=./.pytest-vcluster-complete",
                    "-c",
                    "-C",
                    str(rootfs),
                    ".",
                    "-C",
                    str(stage),
                    "./opt/syncer",  # ./opt itself is in the rootfs: no duplicate entry
                ],
                stdout=subprocess.PIPE,
            )
            changes = [arg for c in CHANGES for arg in ("--change", c)]
            imp = subprocess.Popen(
                [self.docker.cli, "import", *changes, "-", tag],
                stdin=tar.stdout,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert tar.stdout is not None
            tar.stdout.close()  # only docker reads it: tar gets SIGPIPE if docker fails
            _, err = imp.communicate()
            tar.wait()
            if imp.returncode != 0 or tar.returncode != 0:
                raise VClusterError(f"docker import failed: {err.decode()[-2000:]}")
        return tag, True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cache-dir", default=None, help=f"cache (default {default_cache_dir()})")
    p.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    p.add_argument("--print-tag", action="store_true", help="print the image tag and exit")
    args = p.parse_args(argv)
    image = SyncerImage(Path(args.cache_dir) if args.cache_dir else None)
    if args.print_tag:
        print(image.tag())
        return 0
    try:
        tag, built = image.build(force=args.force)
    except (VClusterError, subprocess.CalledProcessError) as exc:
        print(f"syncer: build failed: {exc}", file=sys.stderr)
        return 1
    print(f"{tag} ({'built' if built else 'exists'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
