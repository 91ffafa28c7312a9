"""When the pool starts its next vcluster (pytest_vcluster.idle): CPU times read from
/proc/stat, the busy share between two readings, and the gate's four ways out."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pytest_vcluster.idle import IdleGate, busy_fraction, cpu_times, read_proc_stat

STAT = """cpu  100 5 50 800 20 3 2 10 7 0
cpu0 50 2 25 400 10 1 1 5 3 0
intr 12345
"""


def test_cpu_times_counts_idle_and_iowait_as_not_busy() -> None:
    # user nice system idle iowait irq softirq steal (guest is inside user)
    assert cpu_times(STAT) == (100 + 5 + 50 + 3 + 2 + 10, 990)
    assert cpu_times("intr 1\n") is None


def test_busy_fraction() -> None:
    assert busy_fraction((100, 1000), (150, 1100)) == 0.5
    assert busy_fraction((100, 1000), (100, 1000)) == 0.0  # no time passed


def test_this_machine_has_cpu_times() -> None:
    times = read_proc_stat()
    assert times is not None
    assert 0 < times[0] < times[1]


def _readings(busy_shares: list[float]) -> Iterator[tuple[int, int]]:
    """Readings 100 jiffies apart, each window as busy as given (then idle for good)."""
    busy = total = 0
    yield busy, total
    for share in [*busy_shares, *[0.0] * 1000]:
        busy, total = busy + int(share * 100), total + 100
        yield busy, total


@pytest.mark.parametrize(
    ("shares", "windows"),
    [([], 2), ([0.9, 0.9, 0.9], 5), ([0.9, 0.2, 0.9, 0.2, 0.3], 5)],
)
def test_idle_after_settle_quiet_windows_in_a_row(shares: list[float], windows: int) -> None:
    readings = _readings(shares)
    taken: list[int] = []

    def read() -> tuple[int, int]:
        taken.append(1)
        return next(readings)

    gate = IdleGate(threshold=0.5, window=0.001, settle=2, max_wait=60, read=read)
    assert gate.wait(threading.Event()) == "idle"
    assert len(taken) == windows + 1


def test_a_machine_never_idle_waits_max_wait() -> None:
    readings = _readings([1.0] * 10**6)
    gate = IdleGate(window=0.01, max_wait=0.2, read=lambda: next(readings))
    assert gate.wait(threading.Event()) == "max wait"


def test_asked_returns_at_once_and_no_cpu_times_do_not_wait() -> None:
    go = threading.Event()
    go.set()
    readings = _readings([1.0] * 10**6)
    assert IdleGate(max_wait=60, read=lambda: next(readings)).wait(go) == "asked"
    assert IdleGate(max_wait=60, read=lambda: None).wait(threading.Event()) == "unknown"
