"""A work queue keyed by object: de-duplicated, one worker per key at a time, per-key backoff.

Semantics follow client-go's rate-limited queue: a key added while it is being processed is
processed again afterwards (never concurrently); failures requeue the key after 5 ms * 2^n,
capped at ``max_backoff``; success forgets the failure count.

Keys have a priority: ``CREATE`` (a new object: nothing exists on the other side yet), then
``FOLLOW_UP`` (the second half of a create, e.g. a pod's token), then ``UPDATE`` (everything
else: status copies, bindings, events). Higher priorities are served first, and at most
``update_limit`` updates are processed at once: in a burst of creations both API servers are
the bottleneck, and status copies of the pods created just before would otherwise take their
capacity from the creations still queued.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Hashable

CREATE, FOLLOW_UP, UPDATE = 0, 1, 2


class WorkQueue:
    def __init__(
        self, base_backoff: float = 0.005, max_backoff: float = 30.0, update_limit: int = 0
    ) -> None:
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.update_limit = update_limit  # 0: no limit
        self._cond = threading.Condition()
        self._levels: tuple[deque[Hashable], ...] = (deque(), deque(), deque())
        self._queued: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._processing_update: set[Hashable] = set()  # UPDATE keys being processed
        self._dirty: dict[Hashable, int] = {}  # added while processing -> best priority
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._failures: dict[Hashable, int] = {}
        self._added_at: dict[Hashable, float] = {}
        self._seq = 0
        self._shutdown = False

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._levels) + len(self._delayed)

    def add(self, key: Hashable, urgent: bool = False, priority: int | None = None) -> None:
        """Queue ``key``; ``urgent`` is ``priority=CREATE`` (default ``UPDATE``)."""
        level = priority if priority is not None else (CREATE if urgent else UPDATE)
        with self._cond:
            if self._shutdown:
                return
            if key in self._processing:
                self._dirty[key] = min(level, self._dirty.get(key, UPDATE))
                return
            self._enqueue(key, level, time.monotonic())

    def _enqueue(self, key: Hashable, level: int, now: float) -> None:
        # Already queued: it stays where it is, once.
        if key not in self._queued:
            self._queued.add(key)
            self._added_at.setdefault(key, now)
            self._levels[level].append(key)
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

    def _pop(self) -> Hashable | None:
        for level, q in enumerate(self._levels):
            if not q:
                continue
            updating = len(self._processing_update)
            if level == UPDATE and self.update_limit and updating >= self.update_limit:
                return None
            key = q.popleft()
            if level == UPDATE:
                self._processing_update.add(key)
            return key
        return None

    def get(self, timeout: float | None = None) -> tuple[Hashable, float] | None:
        """(key, seconds it waited in the queue), or None on shutdown/timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_delayed()
                key = self._pop()
                if key is not None:
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
            if key in self._processing_update:
                self._processing_update.discard(key)
                self._cond.notify()  # an update may wait for this slot
            level = self._dirty.pop(key, None)
            if level is not None:
                self._enqueue(key, level, time.monotonic())

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def _promote_delayed(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            if key in self._processing:
                self._dirty.setdefault(key, UPDATE)
            else:
                self._enqueue(key, UPDATE, now)
