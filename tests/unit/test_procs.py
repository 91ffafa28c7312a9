"""Children never outlive their starter: stop(), atexit, SIGTERM and SIGKILL of the parent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pytest_vcluster.procs import ProcessGroup, free_port, pid_alive, proc_starttime


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        with contextlib.suppress(ChildProcessError):  # reap if it is our zombie
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    return not pid_alive(pid)


def test_stop_terminates_then_kills(tmp_path: Path) -> None:
    group = ProcessGroup()
    polite = group.start("sleep", ["sleep", "60"], tmp_path / "a.log")
    stubborn = group.start(
        "stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"], tmp_path / "b.log"
    )
    time.sleep(0.2)
    t0 = time.monotonic()
    group.stop(timeout=0.5)
    assert time.monotonic() - t0 < 3
    assert polite.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert group.children == []


SPAWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pytest_vcluster.procs import ProcessGroup
    group = ProcessGroup()
    child = group.start("sleep", ["sleep", "300"], Path(sys.argv[1]))
    print(child.pid, flush=True)
    mode = sys.argv[2]
    if mode == "exit":
        sys.exit(0)           # atexit must stop the child
    time.sleep(300)           # wait for SIGTERM / SIGKILL from the test
    """
)


def _spawn(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SPAWNER, str(tmp_path / "child.log"), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    assert pid_alive(child)
    return proc, child


def test_child_dies_when_parent_exits_normally(tmp_path: Path) -> None:
    proc, child = _spawn(tmp_path, "exit")
    assert proc.wait(10) == 0
    assert _wait_gone(child)


def test_child_dies_when_parent_gets_sigterm(tmp_path: Path) -> None:
    proc, child = _spawn(tmp_path, "wait")
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    assert _wait_gone(child)


def test_child_dies_when_parent_is_sigkilled(tmp_path: Path) -> None:
    proc, child = _spawn(tmp_path, "wait")
    proc.kill()
    proc.wait(10)
    assert _wait_gone(child)


def test_children_are_in_their_own_session(tmp_path: Path) -> None:
    group = ProcessGroup()
    try:
        child = group.start("sleep", ["sleep", "30"], tmp_path / "c.log")
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        group.stop()


def test_pid_alive_detects_reuse_by_start_time() -> None:
    me = os.getpid()
    assert pid_alive(me, proc_starttime(me))
    assert not pid_alive(me, "1")


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_children_started_from_short_lived_threads_survive_them(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    group = ProcessGroup()
    try:
        with ThreadPoolExecutor(2) as pool:
            children = list(
                pool.map(
                    lambda i: group.start(f"s{i}", ["sleep", "30"], tmp_path / f"{i}.log"), range(2)
                )
            )
        time.sleep(0.3)  # the pool's threads have exited by now
        assert all(c.alive() for c in children)
    finally:
        group.stop()


SLEEP = "import time; time.sleep(60)"


def test_stale_workdir_reaping_kills_its_orphans(tmp_path: Path) -> None:
    from pytest_vcluster.hosts.local import reap_stale_workdirs

    stale = tmp_path / "host-dead"
    stale.mkdir()
    (stale / "owner").write_text("999999999 1")  # no such process
    orphan = subprocess.Popen([sys.executable, "-c", SLEEP, str(stale / "marker")])
    live = tmp_path / "host-live"
    live.mkdir()
    (live / "owner").write_text(f"{os.getpid()} {proc_starttime(os.getpid())}")
    bystander = subprocess.Popen([sys.executable, "-c", SLEEP, str(live / "marker")])
    try:
        assert reap_stale_workdirs(tmp_path) == [stale]
        assert orphan.wait(5) == -signal.SIGKILL
        assert bystander.poll() is None
        assert live.exists()
    finally:
        for p in (orphan, bystander):
            p.kill()
            p.wait()


def _wait_for(pred: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_restartable_child_is_started_again_after_a_kill(tmp_path: Path) -> None:
    group = ProcessGroup()
    child = group.start("sleeper", ["sleep", "60"], tmp_path / "s.log")
    group.supervise([child])
    plain = group.start("plain", ["sleep", "60"], tmp_path / "p.log")
    first = child.pid
    try:
        os.kill(first, signal.SIGKILL)
        assert _wait_for(lambda: child.pid != first and child.alive())
        assert len(child.restarts) == 1
        assert child.restarts[0].startswith("killed by SIGKILL at ")
        assert "sleeper killed by SIGKILL" in (tmp_path / "s.log").read_text()
        # The back-off doubles: the second restart waits ~1 s.
        second = child.pid
        t0 = time.monotonic()
        os.kill(second, signal.SIGKILL)
        assert _wait_for(lambda: child.pid != second and child.alive())
        assert time.monotonic() - t0 >= 0.9
        assert len(child.restarts) == 2
        # A child without the policy stays dead.
        os.kill(plain.pid, signal.SIGKILL)
        assert plain.wait(5)
        time.sleep(0.7)
        assert not plain.alive()
        assert plain.restarts == []
    finally:
        group.stop()
    last = child.pid
    assert _wait_gone(last)
    time.sleep(1.2)  # longer than the next back-off: nothing is started after stop()
    assert child.pid == last


def test_a_forgotten_child_is_not_restarted(tmp_path: Path) -> None:
    group = ProcessGroup()
    child = group.start("sleeper", ["sleep", "60"], tmp_path / "s.log")
    group.supervise([child])
    pid = child.pid
    try:
        child.restart = False
        child.kill()
        group.forget(child)
        time.sleep(0.8)
        assert child.pid == pid
        assert child.restarts == []
    finally:
        group.stop()
