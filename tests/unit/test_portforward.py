"""The plugin's port-forward against a scripted host API server speaking the WebSocket
port-forward protocol (``v4.channel.k8s.io``) on 127.0.0.1. Real host: the kind e2e suite
(every in-cluster vcluster is reached through it)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from pytest_vcluster.portforward import (
    HostEndpoint,
    PortForward,
    PortForwardError,
    frame,
    read_frame,
)


def test_frames_round_trip_masked_and_not() -> None:
    async def roundtrip(payload: bytes, mask: bytes | None) -> tuple[int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(frame(2, payload, mask))
        reader.feed_eof()
        return await read_frame(reader)

    for size in (0, 1, 125, 126, 65535, 65536, 300_000):
        payload = os.urandom(size)
        assert asyncio.run(roundtrip(payload, os.urandom(4))) == (2, payload)
        assert asyncio.run(roundtrip(payload, None)) == (2, payload)


@dataclass
class Script:
    tunnels: int = 0
    refuse: bool = False
    fail_early: bool = False  # the error channel speaks right after the port frames
    requests: list[str] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None


async def _pod(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script) -> None:
    """One tunnel: the upgrade, the two port frames, then an echo of channel 0 ("EXIT" makes
    the error channel report a failure, as a kubelet does when the pod's port refuses)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    script.requests.append(head)
    if script.refuse:
        body = b'{"kind":"Status","message":"forbidden: no portforward for you","code":403}'
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()
        return
    script.tunnels += 1
    script.writers.append(writer)
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
    )
    writer.write(frame(2, b"\x00\x51\x19", None) + frame(2, b"\x01\x51\x19", None))  # port 6481
    if script.fail_early:
        writer.write(frame(2, b"\x01connect: connection refused", None))
    await writer.drain()
    try:
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 8:
                break
            if payload[1:] == b"EXIT":
                writer.write(frame(2, b"\x01connect: connection refused", None))
                await writer.drain()
                continue
            writer.write(frame(2, b"\x00" + payload[1:], None))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


@pytest.fixture
def host() -> Iterator[tuple[HostEndpoint, Script]]:
    script = Script()
    started = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        script.loop = loop
        server = loop.run_until_complete(
            asyncio.start_server(lambda r, w: _pod(r, w, script), "127.0.0.1", 0)
        )
        box["port"] = server.sockets[0].getsockname()[1]
        box["server"] = server
        started.set()
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait()
    ep = HostEndpoint("127.0.0.1", int(box["port"]), None, lambda: {"Authorization": "Bearer t"})  # type: ignore[call-overload]
    yield ep, script
    assert script.loop is not None

    async def shutdown() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(shutdown(), script.loop).result(5)
    script.loop.call_soon_threadsafe(script.loop.stop)
    t.join(5)


@pytest.fixture
def forward(host: tuple[HostEndpoint, Script]) -> Iterator[PortForward]:
    pf = PortForward(host[0], "vcluster-a", "a-0", 6481, spare=False)
    pf.start()
    yield pf
    pf.stop()


def _connect(pf: PortForward) -> socket.socket:
    return socket.create_connection(("127.0.0.1", pf.local_port), timeout=10)


def _echo(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    return got


def test_bytes_pass_both_ways(forward: PortForward, host: tuple[HostEndpoint, Script]) -> None:
    data = os.urandom(1 << 20)
    with _connect(forward) as sock:
        assert _echo(sock, data) == data
    request = host[1].requests[0]
    assert request.startswith("GET /api/v1/namespaces/vcluster-a/pods/a-0/portforward?ports=6481 ")
    assert "Sec-WebSocket-Protocol: v4.channel.k8s.io" in request
    assert "Authorization: Bearer t" in request


def test_each_connection_has_its_own_tunnel(
    forward: PortForward, host: tuple[HostEndpoint, Script]
) -> None:
    """One tunnel breaking (the host drops it) leaves the others working."""
    script = host[1]
    a, b = _connect(forward), _connect(forward)
    assert _echo(a, b"one") == b"one"
    assert _echo(b, b"two") == b"two"
    assert script.tunnels == 2
    assert script.loop is not None
    script.loop.call_soon_threadsafe(script.writers[0].transport.abort)  # a's tunnel dies
    assert a.recv(10) == b""  # a is closed ...
    assert _echo(b, b"still here") == b"still here"  # ... b is not
    c = _connect(forward)  # and the next connection gets a new tunnel on the same port
    assert _echo(c, b"three") == b"three"
    for s in (a, b, c):
        s.close()
    assert forward.connections == 3


def test_the_error_channel_ends_only_that_connection(forward: PortForward) -> None:
    a, b = _connect(forward), _connect(forward)
    a.sendall(b"EXIT")
    assert a.recv(10) == b""
    assert forward.last_error == "connect: connection refused"
    assert _echo(b, b"fine") == b"fine"
    deadline = time.monotonic() + 5
    while forward.open_tunnels != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert forward.open_tunnels == 1
    b.close()


def test_a_refusal_is_one_clear_error(host: tuple[HostEndpoint, Script]) -> None:
    host[1].refuse = True
    pf = PortForward(host[0], "vcluster-a", "a-0", 6481, spare=False)
    pf.start()
    try:
        with pytest.raises(PortForwardError, match=r"the host answered 403: .*no portforward"):
            pf.check()
        with _connect(pf) as sock:  # a client sees its connection closed, nothing hangs
            assert sock.recv(10) == b""
        assert pf.failures == 1
    finally:
        pf.stop()


def _until(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(cond())


def test_a_spare_tunnel_is_ready_for_the_next_connection(
    host: tuple[HostEndpoint, Script],
) -> None:
    script = host[1]
    pf = PortForward(host[0], "vcluster-a", "a-0", 6481)
    pf.start()
    try:
        assert _until(lambda: script.tunnels == 1)  # opened before any connection
        with _connect(pf) as sock:
            assert _echo(sock, b"x") == b"x"
        assert pf.spares_used == 1
        assert _until(lambda: script.tunnels == 2)  # and the next one is opened at once
    finally:
        pf.stop()


def test_a_spare_that_failed_before_use_is_not_handed_out(
    host: tuple[HostEndpoint, Script],
) -> None:
    script = host[1]
    script.fail_early = True
    pf = PortForward(host[0], "vcluster-a", "a-0", 6481)
    pf.start()
    try:
        assert _until(lambda: script.tunnels == 1)
        time.sleep(0.1)  # its error frame has arrived
        script.fail_early = False
        with _connect(pf) as sock:
            assert _echo(sock, b"y") == b"y"  # a new tunnel, not the failed spare
        assert pf.spares_used == 0
    finally:
        pf.stop()


def test_stop_closes_open_connections(host: tuple[HostEndpoint, Script]) -> None:
    pf = PortForward(host[0], "vcluster-a", "a-0", 6481, spare=False)
    pf.start()
    sock = _connect(pf)
    assert _echo(sock, b"x") == b"x"
    pf.stop()
    assert sock.recv(10) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", pf.local_port), timeout=2)
