"""Docker for the kind host: find the CLI, reach (or start) the daemon, and make it work here.

Some VMs run every process without CAP_SYS_RESOURCE in its capability bounding set. Docker
asks runc for *all* capabilities of a ``--privileged`` container (and kind's nodes are
privileged), so runc fails with "unable to apply caps: operation not permitted". On such hosts
(only there) :func:`ensure_docker` registers a small runc wrapper (``images/runc-shim``) as
Docker's default runtime; it drops the capabilities the bounding set lacks from each OCI spec.
Ordinary hosts are left untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from .errors import HostStartError
from .wait import NotYet, poll

Progress = Callable[[str], None]

CAP_SYS_RESOURCE = 24
SHIM_RUNTIME = "pytest-vcluster-runc"
DAEMON_JSON = Path("/etc/docker/daemon.json")
#: Go source of the runc wrapper, in a source checkout of pytest-vcluster.
SHIM_SOURCE = Path(__file__).resolve().parent.parent / "images" / "runc-shim"


class DockerError(HostStartError):
    """Docker is unusable; the message says why and what to do."""


class DockerNotInstalledError(DockerError):
    """No ``docker`` CLI on PATH."""


class DockerNotRunningError(DockerError):
    """The CLI exists but no daemon answers."""


class DockerCommandError(DockerError):
    """A docker command failed; carries its stderr."""


def _quiet(msg: str) -> None:
    pass


# -- capabilities -------------------------------------------------------------------------------
def bounding_set(status: str | None = None) -> int:
    """The ``CapBnd`` mask of this process (from ``/proc/self/status`` unless given)."""
    text = status if status is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split(":", 1)[1].strip(), 16)
    raise DockerError("no CapBnd line in /proc/self/status")


def missing_caps(bnd: int, last: int) -> list[int]:
    """Capability numbers up to ``last`` that the bounding set ``bnd`` lacks."""
    return [c for c in range(last + 1) if not bnd >> c & 1]


def needs_cap_shim(status: str | None = None) -> bool:
    """True on hosts that cannot grant CAP_SYS_RESOURCE (privileged containers fail there)."""
    return not bounding_set(status) >> CAP_SYS_RESOURCE & 1


def is_cgroup_v1(root: Path = Path("/sys/fs/cgroup")) -> bool:
    """True unless the unified (v2) hierarchy is mounted at ``root``."""
    return not (root / "cgroup.controllers").exists()


# -- the CLI and the daemon ---------------------------------------------------------------------
@dataclass
class Docker:
    """Runs the docker CLI, turning failures into :class:`DockerCommandError`."""

    cli: str

    def run(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run(
                [self.cli, *args],
                input=input,
                capture_output=True,
                timeout=timeout,
                check=False,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise DockerCommandError(f"docker {' '.join(args[:3])} timed out") from exc
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[-3000:]
            raise DockerCommandError(f"docker {' '.join(args)} failed ({proc.returncode}): {err}")
        return proc

    def out(self, args: Sequence[str], **kw: object) -> str:
        proc = self.run(args, **kw)  # type: ignore[arg-type]
        return proc.stdout.decode(errors="replace").strip()

    def info(self) -> dict[str, object] | None:
        """``docker info`` as a dict, or None when no daemon answers."""
        proc = self.run(["info", "--format", "{{json .}}"], check=False, timeout=30)
        if proc.returncode != 0:
            return None
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict) or not data.get("ServerVersion"):
            return None
        return data

    def image_exists(self, ref: str) -> bool:
        return self.run(["image", "inspect", ref], check=False, timeout=30).returncode == 0


def containerd_ref(ref: str) -> str:
    """A Docker-style short name as containerd stores it: ``busybox`` is
    ``docker.io/library/busybox``, ``pytest-vcluster/syncer:x`` is
    ``docker.io/pytest-vcluster/syncer:x``."""
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{ref}"
    return ref


def find_cli() -> Docker:
    cli = shutil.which("docker")
    if cli is None:
        raise DockerNotInstalledError(
            "the kind host needs Docker, but there is no `docker` on PATH. Install it "
            "(Debian/Ubuntu: `apt-get install docker.io`) and start the daemon, or use "
            "--vcluster-host=local."
        )
    return Docker(cli)


def start_dockerd(docker: Docker, log: Path, timeout: float = 60.0) -> None:
    """Start ``dockerd`` in the background (root only) and wait until it answers."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise DockerNotRunningError(
            "the Docker daemon is not running (`docker info` failed) and pytest-vcluster cannot "
            "start it"
            + (" (not root)" if dockerd else " (no dockerd on PATH)")
            + ". Start it, e.g. `sudo systemctl start docker` or `sudo dockerd &`."
        )
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        subprocess.Popen(
            [dockerd],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a daemon: it outlives this run on purpose
        )

    def answers() -> None:
        if docker.info() is None:
            raise NotYet("no answer to docker info")

    def not_running(message: str) -> DockerNotRunningError:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        return DockerNotRunningError(f"dockerd ({timeout:.0f}s): {message}; log {log}:\n{tail}")

    poll("dockerd", answers, time.monotonic() + timeout, interval=0.5, timeout_error=not_running)


def shim_config(current: dict[str, object], shim: Path) -> dict[str, object]:
    """``daemon.json`` with the runc wrapper registered as the default runtime."""
    cfg = dict(current)
    runtimes = dict(cfg.get("runtimes") or {})  # type: ignore[call-overload]
    runtimes[SHIM_RUNTIME] = {"path": str(shim)}
    cfg["runtimes"] = runtimes
    cfg["default-runtime"] = SHIM_RUNTIME
    return cfg


def build_shim(cache_dir: Path, progress: Progress = _quiet, go: str | None = None) -> Path:
    """The runc wrapper binary, built from ``images/runc-shim`` into the cache once."""
    env_path = os.environ.get("PYTEST_VCLUSTER_RUNC_SHIM")
    if env_path:
        return Path(env_path)
    main_go = SHIM_SOURCE / "main.go"
    if not main_go.is_file():
        raise DockerError(
            f"this host lacks CAP_SYS_RESOURCE, so Docker needs the runc wrapper, but its source "
            f"({main_go}) is not here; build images/runc-shim from a pytest-vcluster checkout "
            "and set PYTEST_VCLUSTER_RUNC_SHIM=/path/to/it"
        )
    import hashlib

    digest = hashlib.sha256(main_go.read_bytes()).hexdigest()[:12]
    dest = cache_dir / "bin" / f"runc-shim-{digest}" / "runc-shim"
    if dest.is_file():
        return dest
    gobin = go or shutil.which("go")
    if gobin is None:
        raise DockerError("building the runc wrapper needs Go (`go` is not on PATH)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest.parent) + ".lock"):
        if dest.is_file():
            return dest
        progress("pytest-vcluster: building the runc wrapper (host lacks CAP_SYS_RESOURCE)")
        tmp = dest.with_name(".runc-shim.tmp")
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
        proc = subprocess.run(
            [gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "."],
            cwd=SHIM_SOURCE,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            raise DockerError(f"building the runc wrapper failed: {proc.stderr[-2000:]}")
        os.replace(tmp, dest)
    return dest


def _dockerd_pid() -> int | None:
    for pidfile in (Path("/var/run/docker.pid"), Path("/run/docker.pid")):
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def install_shim(docker: Docker, shim: Path, progress: Progress = _quiet) -> None:
    """Register ``shim`` as the default runtime in daemon.json and reload dockerd (SIGHUP)."""
    if os.geteuid() != 0:
        raise DockerError(
            "this host lacks CAP_SYS_RESOURCE, so privileged containers (kind nodes) need the "
            f"runc wrapper as Docker's default runtime; as root, add to {DAEMON_JSON}: "
            + json.dumps(shim_config({}, shim))
            + " and reload dockerd"
        )
    try:
        current = json.loads(DAEMON_JSON.read_text()) if DAEMON_JSON.exists() else {}
    except json.JSONDecodeError as exc:
        raise DockerError(f"{DAEMON_JSON} is not valid JSON: {exc}") from exc
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    DAEMON_JSON.write_text(json.dumps(shim_config(current, shim), indent=2) + "\n")
    pid = _dockerd_pid()
    if pid is None:
        raise DockerError("cannot find dockerd's pid file to reload its configuration")
    progress(f"pytest-vcluster: registered {shim} as Docker's default runtime; reloading dockerd")
    os.kill(pid, signal.SIGHUP)

    def picked_up() -> None:
        info = docker.info()
        if info is None or info.get("DefaultRuntime") != SHIM_RUNTIME:
            raise NotYet(f"default runtime {(info or {}).get('DefaultRuntime')!r}")

    poll(
        "dockerd to pick up the runc wrapper after SIGHUP",
        picked_up,
        time.monotonic() + 20,
        interval=0.3,
        timeout_error=DockerError,
    )


def ensure_docker(
    *,
    start: bool = False,
    cache_dir: Path | None = None,
    progress: Progress = _quiet,
) -> Docker:
    """A working Docker: CLI present, daemon answering, privileged containers possible.

    ``start=True`` starts ``dockerd`` when it is not running (root only; CI and image builds).
    """
    from .binaries import default_cache_dir

    cache = cache_dir or default_cache_dir()
    docker = find_cli()
    info = docker.info()
    if info is None:
        if not start:
            raise DockerNotRunningError(
                "the Docker daemon is not running (`docker info` failed). Start it "
                "(`sudo systemctl start docker`, or `sudo dockerd &`) and run again."
            )
        progress("pytest-vcluster: starting dockerd")
        start_dockerd(docker, cache / "dockerd.log")
        info = docker.info() or {}
    if needs_cap_shim() and info.get("DefaultRuntime") != SHIM_RUNTIME:
        install_shim(docker, build_shim(cache, progress), progress)
    return docker


if __name__ == "__main__":  # pragma: no cover - manual helper
    ensure_docker(start=True, progress=lambda m: print(m, file=sys.stderr))
    print("docker ok")
