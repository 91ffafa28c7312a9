"""A work queue keyed by object: de-duplicated, one worker per key at a time, per-key backoff.

Semantics follow client-go's rate-limited queue: a key added while it is being processed is
processed again afterwards (never concurrently); failures requeue the key after 5 ms * 2^n,
capped at ``max_backoff``; success forgets the failure count. Keys added as ``urgent`` (new
objects: nothing exists on the other side yet) are served before the others, so a burst of
creations is not queued behind the status updates of the objects created just before.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Hashable


class WorkQueue:
    def __init__(self, base_backoff: float = 0.005, max_backoff: float = 30.0) -> None:
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self._cond = threading.Condition()
        self._queue: deque[Hashable] = deque()
        self._urgent: deque[Hashable] = deque()
        self._queued: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._dirty: set[Hashable] = set()  # added while processing
        self._dirty_urgent: set[Hashable] = set()  # ... as urgent
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._failures: dict[Hashable, int] = {}
        self._added_at: dict[Hashable, float] = {}
        self._seq = 0
        self._shutdown = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._urgent) + len(self._delayed)

    def add(self, key: Hashable, urgent: bool = False) -> None:
        with self._cond:
            if self._shutdown:
                return
            if key in self._processing:
                self._dirty.add(key)
                if urgent:
                    self._dirty_urgent.add(key)
                return
            if key not in self._queued:
                self._queued.add(key)
                self._added_at.setdefault(key, time.monotonic())
                (self._urgent if urgent else self._queue).append(key)
                self._cond.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, key))
            self._cond.notify()

    def add_rate_limited(self, key: Hashable) -> float:
        with self._cond:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        delay: float = min(self.base_backoff * (2.0**n), self.max_backoff)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: Hashable) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def get(self, timeout: float | None = None) -> tuple[Hashable, float] | None:
        """(key, seconds it waited in the queue), or None on shutdown/timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_delayed()
                if self._urgent or self._queue:
                    key = (self._urgent or self._queue).popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    waited = time.monotonic() - self._added_at.pop(key, time.monotonic())
                    return key, waited
                if self._shutdown:
                    return None
                wait = None
                if self._delayed:
                    wait = max(0.0, self._delayed[0][0] - time.monotonic())
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                urgent = key in self._dirty_urgent
                self._dirty_urgent.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._added_at.setdefault(key, time.monotonic())
                    (self._urgent if urgent else self._queue).append(key)
                    self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def _promote_delayed(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            if key in self._processing:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._added_at.setdefault(key, now)
                self._queue.append(key)
