"""When this machine is idle enough for the pool to start its next vcluster.

A pooled vcluster's start costs CPU outside its own pod, which no CPU budget of the pod can
weigh: the host's API server and etcd, the kubelet and containerd starting its containers,
helm. Started the moment a test takes the previous one, it ran beside the test's own work and
slowed it (``bench/pool.py``). So the pool waits until the machine's CPU has been mostly idle
for a moment (the test waits or thinks), a test asks for the vcluster (then at once), or
``max_wait`` has passed (a machine that is never idle still gets its pool).

Read from ``/proc/stat`` (all cores together); where there is none (not Linux), at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")

#: (busy, total) jiffies of all cores.
Times = tuple[int, int]


def cpu_times(stat: str) -> Times | None:
    """(busy, total) from ``/proc/stat``'s ``cpu`` line: idle and iowait are not busy; guest
    time is already in user time."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:9]]  # user..steal
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            total = sum(values)
            return total - idle, total
    return None


def busy_fraction(before: Times, after: Times) -> float:
    """The share of all cores' time that was busy between two readings (0 when none passed)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def read_proc_stat() -> Times | None:
    try:
        return cpu_times(PROC_STAT.read_text())
    except OSError:
        return None


@dataclass
class IdleGate:
    """``wait`` returns once ``settle`` windows in a row were at most ``threshold`` busy."""

    threshold: float = 0.5
    window: float = 0.25
    settle: int = 2
    max_wait: float = 10.0
    read: Callable[[], Times | None] = read_proc_stat

    def wait(self, go: threading.Event) -> str:
        """Why it returned: ``idle``, ``asked`` (``go`` was set), ``max wait``, or
        ``unknown`` (no CPU times to read)."""
        t0 = time.monotonic()
        before = self.read()
        if before is None:
            return "unknown"
        quiet = 0
        while True:
            if go.wait(self.window):
                return "asked"
            after = self.read()
            if after is None:
                return "unknown"
            quiet = quiet + 1 if busy_fraction(before, after) <= self.threshold else 0
            before = after
            if quiet >= self.settle:
                return "idle"
            if time.monotonic() - t0 >= self.max_wait:
                return "max wait"
