"""The syncer image: CPython 3.11, the ``syncer`` package and what it imports (and
``pytest_vcluster``, whose janitor runs from this image in the host cluster).

Two bases, one result (``python3 -m syncer`` as user 65532, packages in ``/opt/syncer``):

- offline, where ``debootstrap`` is: ``debootstrap --variant=minbase bookworm`` with
  ``python3`` and ``ca-certificates`` (cached as a directory, slimmed), imported into Docker
  with the packages (``docker import``);
- anywhere else (a machine with internet and no debootstrap: macOS, Fedora, CI images), or
  when ``PYTEST_VCLUSTER_SYNCER_BASE_IMAGE`` names a base: an ordinary ``docker build`` of
  ``FROM python:3.11-slim`` (or that base) with the packages copied in.

The packages are installed here, not in the image: the ``syncer`` and ``pytest_vcluster``
sources copied as they are (pure Python; a checkout's or an installed wheel's), and
``kubernetes``, ``cryptography`` and ``PyJWT`` at the versions installed here, as wheels for the
image's CPython 3.11 whichever Python runs this (pip's ``--python-version/--abi/--platform``).
Nothing runs pip inside a container, so the build needs no network beyond the base image.

The tag is ``pytest-vcluster/syncer:<hash>``; the hash covers this recipe, the base, both
packages' sources and those versions, so an unchanged recipe is found in Docker at once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from ..binaries import arch, default_cache_dir
from ..docker import Docker, ensure_docker
from ..errors import VClusterError
from ..rootfs import SLIM_PATHS, debootstrap_rootfs

REPO = "pytest-vcluster/syncer"
SUITE = "bookworm"
PYTHON_ABI = (3, 11)  # bookworm's python3, and the default base image's
BASE_IMAGE_ENV = "PYTEST_VCLUSTER_SYNCER_BASE_IMAGE"
BASE_IMAGE = "python:3.11-slim"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "ca-certificates")
SYNCER_PACKAGES = ("kubernetes", "cryptography", "PyJWT")  # the syncer's imports besides the stdlib


def _syncer_src() -> Path:
    spec = importlib.util.find_spec("syncer")  # where it is importable, without importing it
    if spec is None or spec.origin is None:
        raise VClusterError("the syncer package is not installed next to pytest_vcluster")
    return Path(spec.origin).resolve().parent


SYNCER_SRC = _syncer_src()
PLUGIN_SRC = Path(__file__).resolve().parents[1]
ENV = ("PYTHONPATH=/opt/syncer", "PYTHONUNBUFFERED=1")
ENTRYPOINT = '["python3", "-m", "syncer"]'


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def source_files() -> list[Path]:
    """The sources the image holds: the syncer's and the plugin's (the janitor's)."""
    files = [*sorted(SYNCER_SRC.rglob("*.py")), *sorted(PLUGIN_SRC.rglob("*.py"))]
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


def dockerfile(base: str) -> str:
    lines = [f"FROM {base}", "COPY opt/syncer /opt/syncer"]
    lines += [f"ENV {e}" for e in ENV]
    lines += ["USER 65532", f"ENTRYPOINT {ENTRYPOINT}"]
    return "\n".join(lines) + "\n"


def chosen_base(
    which: Callable[[str], str | None] = shutil.which, env: Mapping[str, str] = os.environ
) -> str | None:
    """The image to build FROM: the named one, else none (debootstrap) where debootstrap is,
    else ``python:3.11-slim``."""
    return env.get(BASE_IMAGE_ENV) or (None if which("debootstrap") else BASE_IMAGE)


class SyncerImage:
    """``base``: an image to build FROM (``None``: the environment's, else debootstrap where
    it is installed, else ``python:3.11-slim``)."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        docker: Docker | None = None,
        mirror: str | None = None,
        base: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.cache_dir = (cache_dir or default_cache_dir()).expanduser()
        self.work = self.cache_dir / "images" / "syncer"
        self.mirror = mirror or os.environ.get("PYTEST_VCLUSTER_DEBIAN_MIRROR") or DEFAULT_MIRROR
        self.base = base or chosen_base()
        self.progress = progress or _stderr
        self._docker = docker

    @property
    def docker(self) -> Docker:
        if self._docker is None:
            self._docker = ensure_docker(start=True, cache_dir=self.cache_dir)
        return self._docker

    @staticmethod
    def requirements() -> list[str]:
        """What the syncer imports, pinned at the versions installed here."""
        return [f"{name}=={importlib.metadata.version(name)}" for name in SYNCER_PACKAGES]

    def tag(self) -> str:
        base = [f"image={self.base}"] if self.base else [SUITE, *PACKAGES]
        parts: list[str | bytes] = [*base, *self.requirements(), Path(__file__).read_bytes()]
        for p in source_files():
            root = SYNCER_SRC if p.is_relative_to(SYNCER_SRC) else PLUGIN_SRC
            parts += [f"{root.name}/{p.relative_to(root).as_posix()}", p.read_bytes()]
        return f"{REPO}:{_digest(*parts)[:12]}"

    # -- steps ------------------------------------------------------------------------------
    def rootfs(self) -> Path:
        root = self.work / f"rootfs-{SUITE}-{_digest(SUITE, *PACKAGES, *SLIM_PATHS)[:10]}"
        self.progress(f"syncer: root filesystem {root}")
        return debootstrap_rootfs(
            root,
            suite=SUITE,
            packages=PACKAGES,
            mirror=self.mirror,
            slim_paths=SLIM_PATHS,
            log=self.work / "debootstrap.log",
            purpose="the syncer image (offline recipe; or set "
            f"{BASE_IMAGE_ENV} to a CPython 3.11 image such as {BASE_IMAGE})",
            prefix=("nice", "-n", "19"),
        )

    def site_packages(self, dest: Path) -> None:
        """The syncer's sources and dependencies for the image's interpreter, into ``dest``
        (which becomes /opt/syncer), by the host's pip: binary wheels for that interpreter
        and platform, nothing compiled here."""
        skip = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(SYNCER_SRC, dest / "syncer", ignore=skip)
        # pytest_vcluster too: the in-cluster janitor (examples/ci/janitor.yaml) runs
        # `python -m pytest_vcluster.janitor` in this image.
        shutil.copytree(PLUGIN_SRC, dest / "pytest_vcluster", ignore=skip)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        install = ["nice", "-n", "19", *pip, "install", "--target", str(dest)]
        install += ["--no-warn-script-location", "--no-warn-conflicts", *target_interpreter()]
        subprocess.run([*install, *self.requirements()], check=True)
        shutil.rmtree(dest / "bin", ignore_errors=True)

    def build(self, *, force: bool = False) -> tuple[str, bool]:
        tag = self.tag()
        if not force and self.docker.image_exists(tag):
            return tag, False
        rootfs = None if self.base else self.rootfs()
        self.work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            stage = Path(tmp) / "stage"
            self.site_packages(stage / "opt" / "syncer")
            if rootfs is None:
                self._docker_build(stage, tag)
            else:
                self._docker_import(rootfs, stage, tag)
        return tag, True

    def _docker_build(self, context: Path, tag: str) -> None:
        assert self.base is not None
        self.progress(f"syncer: docker build FROM {self.base}")
        (context / "Dockerfile").write_text(dockerfile(self.base))
        proc = self.docker.run(["build", "-q", "-t", tag, str(context)], timeout=1800, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[-2000:]
            raise VClusterError(
                f"docker build of the syncer image FROM {self.base} failed: {err} (the base "
                f"must be a CPython 3.11 image Docker has or can pull; {BASE_IMAGE_ENV} names "
                "another, and with debootstrap installed the offline recipe needs none)"
            )

    def _docker_import(self, rootfs: Path, stage: Path, tag: str) -> None:
        tar = subprocess.Popen(
            [
                "tar", "--numeric-owner", "--exclude=./.pytest-vcluster-complete", "-c",
                "-C", str(rootfs), ".",
                "-C", str(stage), "./opt/syncer",  # ./opt is in the rootfs: no duplicate entry
            ],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        changes = [f"ENV {e}" for e in ENV]
        changes += ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        changes += ["USER 65532", f"ENTRYPOINT {ENTRYPOINT}"]
        imp = subprocess.Popen(
            [self.docker.cli, "import", *(a for c in changes for a in ("--change", c)), "-", tag],
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


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
