"""One connection to the host API server opened ahead of the next kubelet call.

Every exec, attach or port-forward is a new upgraded connection (HTTP/1.1 upgrades cannot share
one), so each would pay a TCP connect and a TLS handshake with the host API server before its
first byte. A spare made right after each call takes that off the next one's path; it is
dropped unused after ``max_age`` seconds, well before the API server's idle limits (Go's
``ReadHeaderTimeout``), so an idle syncer holds no connection for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger("syncer.kubelet")

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
SPARE_SECONDS = 15.0


class Spare:
    """Use from the event loop's thread only."""

    def __init__(self, max_age: float = SPARE_SECONDS) -> None:
        self.max_age = max_age
        self._task: asyncio.Task[Conn] | None = None
        self._key: Hashable = None
        self._born = 0.0
        self.hits = 0  # calls served by a spare (tests, metrics)

    async def take(self, key: Hashable, connect: Callable[[], Awaitable[Conn]]) -> Conn:
        """A connection to ``key`` (the endpoint ``connect`` opens): the spare if it is fresh
        and still open, else a new one; then the next spare is started."""
        loop = asyncio.get_running_loop()
        task, fresh = self._task, self._key == key and loop.time() - self._born < self.max_age
        self._task = None
        conn: Conn | None = None
        if task is not None and fresh:
            try:
                reader, writer = await task  # still connecting: no slower than a new one
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                log.debug("spare host connection failed (a new one is tried): %s", exc)
            else:
                if reader.at_eof() or writer.is_closing():
                    writer.close()
                else:
                    conn = (reader, writer)
                    self.hits += 1
        elif task is not None:
            _discard(task)
        if conn is None:
            conn = await connect()
        self._start(key, connect)
        return conn

    def _start(self, key: Hashable, connect: Callable[[], Awaitable[Conn]]) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(connect())
        self._task, self._key, self._born = task, key, loop.time()
        loop.call_later(self.max_age, self._expire, task)

    def _expire(self, task: asyncio.Task[Conn]) -> None:
        if self._task is task:
            self._task = None
            _discard(task)

    def close(self) -> None:
        if self._task is not None:
            _discard(self._task)
            self._task = None


def _discard(task: asyncio.Task[Conn]) -> None:
    if not task.done():
        task.cancel()
        return
    with contextlib.suppress(BaseException):
        task.result()[1].close()
