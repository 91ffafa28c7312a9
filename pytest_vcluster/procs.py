"""Child processes that can never outlive the process that started them.

Three nets: ``stop()`` in the owner's ``finally``; an ``atexit`` hook (with SIGTERM turned into
KeyboardInterrupt so it runs); and ``PR_SET_PDEATHSIG=SIGKILL`` in every child, so even a
SIGKILLed test runner takes its children along. Children get their own session so a terminal's
Ctrl-C reaches only the runner, which then stops them in order.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_groups: weakref.WeakSet[ProcessGroup] = weakref.WeakSet()
_sigterm_installed = False


def _die_with_parent(parent: int) -> None:
    # Runs in the child between fork and exec.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _install_sigterm() -> None:
    """Let SIGTERM unwind the stack (finally/atexit run) instead of killing outright."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)
    _sigterm_installed = True


@atexit.register
def _stop_everything() -> None:
    for group in list(_groups):
        group.stop()


_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _spawn(make: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Fork from a thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so a child started
    from a short-lived worker thread (a ThreadPoolExecutor) would be killed with that thread.
    The main thread and one long-lived daemon thread are safe places to fork from.
    """
    global _spawner
    if threading.current_thread() is threading.main_thread():
        return make()
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(1, thread_name_prefix="pytest-vcluster-spawner")
    return _spawner.submit(make).result()


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    env: Mapping[str, str] | None = None
    restart: bool = False  # started again when it exits on its own (see ProcessGroup)
    #: Each exit it was restarted after: "exit code -9 (SIGKILL) at 23:15:02".
    restarts: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    # Reaped with os.waitpid, not Popen.poll/wait: a KeyboardInterrupt landing inside Popen's
    # internal lock leaves it held, and every later Popen.wait() then blocks for ever.
    def poll(self) -> int | None:
        if self.popen.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                self.popen.returncode = -1
            else:
                if pid:
                    self.popen.returncode = os.waitstatus_to_exitcode(status)
        return self.popen.returncode

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def alive(self) -> bool:
        return self.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> bool:
        """True once it has exited (and is reaped); False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.alive():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 16384))
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failure_excerpt(self, errors: int = 8, tail: int = 5) -> str:
        """Error lines of the log (klog ``E...`` lines, "error", "fatal") and its last lines."""
        lines = self.log_tail(400).splitlines()
        keys = ("error", "fatal", "panic", "failed")
        picked = [ln for ln in lines if ln[:1] in ("E", "F") or any(k in ln.lower() for k in keys)]
        last = [ln for ln in lines[-tail:] if ln not in picked[-errors:]]
        return "\n".join(picked[-errors:] + last)

    def rss_bytes(self) -> int:
        """Resident memory of the child, from /proc (0 once it has exited)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0


def describe_exit(code: int | None) -> str:
    """``exit code 1``, ``killed by SIGKILL``, with the time."""
    when = time.strftime("%H:%M:%S")
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name} at {when}"
    return f"exit code {code} at {when}"


#: Restart back-off: 0.5 s doubling to 5 s, as a kubelet's (shorter: these start in seconds).
RESTART_BACKOFF = (0.5, 5.0)


@dataclass
class ProcessGroup:
    """The children of one host or vcluster, stopped together in reverse start order.

    A child handed to ``supervise()`` is started again (same argv, same log, appended) when it
    exits on its own, after a back-off, as a kubelet restarts a crashed container; its
    ``restarts`` say when and why. The control planes' processes are such children: their
    state is in etcd, so a killed API server comes back where it was.
    """

    children: list[Child] = field(default_factory=list)
    #: False for processes that may be kept after the run (keep policies): no PDEATHSIG.
    die_with_parent: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _respawn: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _supervisor: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _groups.add(self)
        _install_sigterm()

    def __hash__(self) -> int:
        return id(self)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        child = Child(name, list(argv), log_path, self._popen(argv, log_path, env), env)
        with self._lock:
            self.children.append(child)
        return child

    def supervise(self, children: Sequence[Child] | None = None) -> None:
        """Restart these children (default: all) from now on when they exit on their own —
        called once they are up, so a failed start stays the start's to report."""
        with self._lock:
            chosen = list(self.children if children is None else children)
        for child in chosen:
            child.restart = True
        if chosen and (self._supervisor is None or not self._supervisor.is_alive()):
            self._stopping.clear()
            self._supervisor = threading.Thread(
                target=self._supervise, name="pytest-vcluster-supervisor", daemon=True
            )
            self._supervisor.start()

    def restarts(self) -> dict[str, list[str]]:
        """Each restarted child's exits, by name."""
        with self._lock:
            return {c.name: list(c.restarts) for c in self.children if c.restarts}

    def _popen(
        self, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None
    ) -> subprocess.Popen[bytes]:
        parent = os.getpid()
        preexec = (lambda: _die_with_parent(parent)) if self.die_with_parent else None
        with log_path.open("ab") as log:
            return _spawn(
                lambda: subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(env) if env is not None else None,
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            )

    def _supervise(self) -> None:
        due: dict[int, float] = {}  # id(child) -> when to start it again
        while not self._stopping.wait(0.1):
            with self._lock:
                watched = [c for c in self.children if c.restart]
            for child in watched:
                if child.alive():
                    continue
                key = id(child)
                if key not in due:
                    child.restarts.append(describe_exit(child.returncode))
                    first, cap = RESTART_BACKOFF
                    due[key] = time.monotonic() + min(cap, first * 2 ** (len(child.restarts) - 1))
                    with contextlib.suppress(OSError), child.log_path.open("ab") as log:
                        log.write(
                            f"\n=== pytest-vcluster: {child.name} {child.restarts[-1]}; "
                            "starting it again ===\n".encode()
                        )
                if time.monotonic() < due[key]:
                    continue
                with self._respawn:
                    if self._stopping.is_set():
                        return
                    child.popen = self._popen(child.argv, child.log_path, child.env)
                del due[key]

    def detach(self) -> list[Child]:
        """Stop owning the children: they keep running after this process exits."""
        self._stopping.set()
        _groups.discard(self)
        with self._lock:
            children, self.children = self.children, []
        return children

    def forget(self, child: Child) -> None:
        """Drop a child that exited or is being killed (a failed attempt that was retried):
        it is not started again."""
        child.restart = False
        child.wait()
        with self._lock:
            self.children.remove(child)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every child (newest first), then SIGKILL what is left after ``timeout``."""
        self._stopping.set()
        with self._respawn:  # a restart in progress ends first; none starts after this
            pass
        with self._lock:
            children, self.children = list(reversed(self.children)), []
        for child in children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in children:
            if not child.wait(max(0.0, deadline - time.monotonic())):
                child.kill()
                child.wait()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (callers retry if a child then fails to bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int, starttime: str | None = None) -> bool:
    """True if ``pid`` runs and (when given) started at ``starttime`` (guards against reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return starttime is None or proc_starttime_from_stat(stat) == starttime


def proc_starttime_from_stat(stat: str) -> str:
    # Field 22 of /proc/<pid>/stat; the command name (field 2) may contain spaces, skip past ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def proc_starttime(pid: int) -> str:
    return proc_starttime_from_stat(Path(f"/proc/{pid}/stat").read_text())
