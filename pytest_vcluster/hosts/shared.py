"""One local host per test run, shared by every xdist worker (and by parallel runs that ask).

The host runs in a small supervisor process (``python -m pytest_vcluster.hosts.shared``) so it
can outlive the worker that started it. Workers register their PID in a state directory under
a file lock; the last one to leave stops the supervisor, and the supervisor also stops by itself
once every registered PID is dead (a worker killed with SIGKILL), so nothing outlives the run.
With ``reuse`` the supervisor keeps running for the next run instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

from ..errors import HostStartError, ReadinessTimeoutError
from ..procs import pid_alive, proc_starttime
from ..wait import NotYet, poll
from .local_info import LocalHostInfo

STATE = "host.json"
USERS = "users.json"
LOCK = "host.lock"
LOG = "supervisor.log"
KEEP = "keep"  # present: kept vclusters need this host after the run (until `reap`)


def _read_users(state_dir: Path) -> dict[str, str]:
    try:
        data: dict[str, str] = json.loads((state_dir / USERS).read_text())
        return data
    except (OSError, ValueError):
        return {}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _alive_users(users: dict[str, str]) -> dict[str, str]:
    return {pid: start for pid, start in users.items() if pid_alive(int(pid), start)}


class SharedHost:
    """A worker's handle: ``acquire()`` returns the LocalHostInfo, ``release()`` gives it back."""

    def __init__(
        self,
        state_dir: Path,
        *,
        k8s_version: str,
        cache_dir: Path,
        timeout: float,
        reuse: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self.k8s_version = k8s_version
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.reuse = reuse
        self.info: LocalHostInfo | None = None
        self.started_here = False

    def _lock(self) -> FileLock:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.state_dir / LOCK), timeout=self.timeout + 60)

    def _current(self) -> LocalHostInfo | None:
        try:
            info = LocalHostInfo.from_json((self.state_dir / STATE).read_text())
        except (OSError, ValueError, TypeError):
            return None
        if not pid_alive(info.supervisor_pid):
            return None
        if info.k8s_version != self.k8s_version:
            raise HostStartError(
                f"a reused local host in {self.state_dir} runs Kubernetes {info.k8s_version}, "
                f"not {self.k8s_version}; stop it with `pytest-vcluster reap` or use another "
                "--vcluster-cache-dir"
            )
        return info

    def acquire(self) -> LocalHostInfo:
        me = str(os.getpid())
        with self._lock():
            users = _alive_users(_read_users(self.state_dir))
            users[me] = proc_starttime(os.getpid())
            _write_atomic(self.state_dir / USERS, json.dumps(users))
            info = self._current()
            if info is None:
                info = self._spawn()
                self.started_here = True
        self.info = info
        return info

    def _spawn(self) -> LocalHostInfo:
        (self.state_dir / STATE).unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "pytest_vcluster.hosts.shared",
            f"--state-dir={self.state_dir}",
            f"--k8s-version={self.k8s_version}",
            f"--cache-dir={self.cache_dir}",
            f"--timeout={self.timeout}",
        ]
        if self.reuse:
            argv.append("--reuse")
        log = (self.state_dir / LOG).open("ab")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def ready() -> LocalHostInfo:
            if proc.poll() is not None:
                tail = (self.state_dir / LOG).read_text(errors="replace")[-3000:]
                raise HostStartError(f"the local host did not start:\n{tail}")
            info = self._current()
            if info is None:
                raise NotYet("no state file yet")
            return info

        try:
            return poll(
                f"the local host (its supervisor, {self.timeout:.0f}s)",
                ready,
                time.monotonic() + self.timeout + 30,
                interval=0.05,
                timeout_error=HostStartError,
            )
        except HostStartError:
            proc.kill()
            raise

    def release(self) -> None:
        me = str(os.getpid())
        with self._lock():
            users = _alive_users(_read_users(self.state_dir))
            users.pop(me, None)
            _write_atomic(self.state_dir / USERS, json.dumps(users))
            if self.reuse:
                (self.state_dir / KEEP).touch()
            if users or self.reuse or self.info is None:
                return
            stop_supervisor(self.info.supervisor_pid)
            (self.state_dir / STATE).unlink(missing_ok=True)


def stop_supervisor(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM the supervisor (it stops the host's processes in order); whether it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)

    def gone() -> None:
        if pid_alive(pid):
            raise NotYet("still running")

    try:
        poll(f"supervisor {pid} to stop", gone, time.monotonic() + timeout, interval=0.02)
    except ReadinessTimeoutError:
        return False
    return True


# -- the supervisor process -----------------------------------------------------------------


def _supervise(args: argparse.Namespace) -> int:
    from ..binaries import LOCAL_HOST_TOOLS, BinaryResolver
    from ..versions import parse_k8s_version
    from .local import LocalHost

    state_dir = Path(args.state_dir)
    k8s = parse_k8s_version(args.k8s_version)
    resolver = BinaryResolver(k8s, Path(args.cache_dir))
    paths = {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
    host = LocalHost(
        k8s,
        paths,
        timeout=args.timeout,
        progress=lambda m: print(m, flush=True),
        cache_dir=Path(args.cache_dir),
    )
    registry = Path(args.cache_dir) / "hosts" / "running"
    registry.mkdir(parents=True, exist_ok=True)
    record = registry / f"{os.getpid()}.json"
    with host:
        _write_atomic(state_dir / STATE, host.info().to_json())
        record.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "starttime": proc_starttime(os.getpid()),
                    "state_dir": str(state_dir),
                    "kubeconfig": str(host.kubeconfig_path),
                    "k8s_version": str(k8s),
                    "reuse": bool(args.reuse),
                }
            )
        )
        print(f"ready: {host.kubeconfig_path}", flush=True)
        try:
            return _wait_for_users(state_dir, args.reuse)
        finally:
            record.unlink(missing_ok=True)


def _wait_for_users(state_dir: Path, reuse: bool) -> int:
    """The supervisor's watch, for as long as the host is needed (no deadline: SIGTERM or the
    last user gone ends it)."""
    idle_since: float | None = None
    while True:  # SIGTERM (KeyboardInterrupt via procs) ends this loop
        time.sleep(0.5)
        if reuse or (state_dir / KEEP).exists():
            continue
        if _alive_users(_read_users(state_dir)):
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > 2:
            print("every user is gone: stopping", flush=True)
            (state_dir / STATE).unlink(missing_ok=True)
            return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--state-dir", required=True)
    p.add_argument("--k8s-version", required=True)
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--reuse", action="store_true")
    args = p.parse_args(argv)
    try:
        return _supervise(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
