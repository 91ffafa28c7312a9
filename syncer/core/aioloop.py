"""A TCP server on an asyncio loop of its own thread, for servers that live beside threaded
code (the syncer's kubelet API; the plugin's port-forward): start() returns the bound port,
stop() cancels every connection's task and ends the loop."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class LoopServer:
    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int = 0,
        *,
        name: str,
        ssl_context: ssl.SSLContext | None = None,
        on_start: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        **server_kw: Any,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.name = name
        self.ssl_context = ssl_context
        self.on_start = on_start  # called on the loop once serving
        self.on_stop = on_stop  # called on the loop before the tasks are cancelled
        self.server_kw = server_kw
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    def start(self) -> int:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(
                        self._accept, self.host, self.port, ssl=self.ssl_context, **self.server_kw
                    )
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            if self.on_start is not None:
                loop.call_soon(self.on_start)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self.port

    def stop(self) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            if self.on_stop is not None:
                self.on_stop()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            loop.stop()

        with contextlib.suppress(RuntimeError):  # the loop ended already
            asyncio.run_coroutine_threadsafe(shutdown(), loop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self.handler(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
