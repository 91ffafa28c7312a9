"""The spare host connection of the kubelet proxy, against a real TCP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from syncer.kubelet.spare import Conn, Spare


class Counting:
    """A TCP server that counts the connections it accepts and which are still open."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        try:
            await reader.read()  # until the client closes
        finally:
            self.open -= 1
            writer.close()


def _connector(port: int) -> Callable[[], Awaitable[Conn]]:
    return lambda: asyncio.open_connection("127.0.0.1", port)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def test_second_call_uses_the_spare_made_after_the_first() -> None:
    async def run() -> None:
        srv = Counting()
        port = await srv.start()
        spare = Spare()
        _, w1 = await spare.take(port, _connector(port))
        await _settle()
        assert srv.accepted == 2  # the call's and the spare
        _, w2 = await spare.take(port, _connector(port))
        assert spare.hits == 1
        await _settle()
        assert srv.accepted == 3  # no new connection for the call; the next spare
        for w in (w1, w2):
            w.close()
        spare.close()
        await _settle()
        assert srv.open == 0  # nothing left open, the spare included

    asyncio.run(run())


def test_an_old_spare_is_closed_and_not_used() -> None:
    async def run() -> None:
        srv = Counting()
        port = await srv.start()
        spare = Spare(max_age=0.05)
        _, w = await spare.take(port, _connector(port))
        w.close()
        await asyncio.sleep(0.2)
        assert srv.open == 0  # expired on its own, while idle
        _, w = await spare.take(port, _connector(port))
        assert spare.hits == 0
        w.close()
        spare.close()

    asyncio.run(run())


def test_a_spare_for_another_endpoint_is_not_used() -> None:
    async def run() -> None:
        a, b = Counting(), Counting()
        port_a, port_b = await a.start(), await b.start()
        spare = Spare()
        _, w = await spare.take(port_a, _connector(port_a))
        w.close()
        _, w = await spare.take(port_b, _connector(port_b))  # the endpoint moved
        assert spare.hits == 0
        w.close()
        await _settle()
        assert a.open == 0  # the spare for the old endpoint was closed
        spare.close()

    asyncio.run(run())


def test_a_spare_the_server_closed_is_not_used() -> None:
    async def run() -> None:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        spare = Spare()
        _, w = await spare.take(port, _connector(port))
        w.close()
        await _settle()
        _, w = await spare.take(port, _connector(port))
        assert spare.hits == 0  # the idle spare had been hung up on: a new one was opened
        w.close()
        spare.close()
        server.close()

    asyncio.run(run())
