"""127.0.0.1:<port> → a port of a pod on the host, one tunnel per local connection.

The vcluster's API server (and its syncer's health port) run in a pod on the host; tests reach
them through this forwarder. ``kubectl port-forward`` multiplexes every connection over one
tunnel and exits on the first stream error ("lost connection to pod") — measured here: a
``kubectl exec`` through the vcluster closes its connection while kubectl is still writing, the
write fails, and every other open connection (a ``logs -f``, a watch) dies with it. Here each
accepted connection opens its own WebSocket to the host API server's ``pods/portforward``
(``v4.channel.k8s.io``: one byte of channel, the first frame of each channel carries the port),
so a broken stream ends only its own connection, and a restarted pod only the connections it
had. Each new tunnel costs one TLS + upgrade round trip; clients keep their connections alive.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from syncer.core.aioloop import LoopServer

from .errors import VClusterError

log = logging.getLogger(__name__)
PROTOCOL = "v4.channel.k8s.io"
SPARE_SECONDS = 20.0
_CHUNK = 256 * 1024


class PortForwardError(VClusterError):
    pass


@dataclass(frozen=True)
class HostEndpoint:
    """How to reach the host API server as its user (from its kubeconfig)."""

    host: str
    port: int
    ssl_context: ssl.SSLContext | None
    headers: Callable[[], dict[str, str]]  # Authorization etc., asked anew per tunnel

    @classmethod
    def from_kubeconfig(cls, path: str, context: str | None = None) -> HostEndpoint:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, client_configuration=cfg
        )
        url = urlsplit(cfg.host)
        ctx: ssl.SSLContext | None = None
        if url.scheme == "https":
            ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
            if not cfg.verify_ssl:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if cfg.cert_file:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file)

        def headers() -> dict[str, str]:
            hook = getattr(cfg, "refresh_api_key_hook", None)
            if hook is not None:  # exec plugins and expiring tokens
                hook(cfg)
            token = cfg.get_api_key_with_prefix("authorization") or cfg.get_api_key_with_prefix(
                "BearerToken"
            )
            return {"Authorization": token} if token else {}

        default = 443 if url.scheme == "https" else 80
        return cls(url.hostname or "localhost", url.port or default, ctx, headers)


def frame(opcode: int, payload: bytes, mask: bytes | None) -> bytes:
    """One WebSocket frame (FIN set); a client masks its frames (RFC 6455 5.3)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of the next frame; continuation frames are joined."""
    data = b""
    while True:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        mask = await reader.readexactly(4) if b1 & 0x80 else b""
        payload = await reader.readexactly(n)
        if mask:
            key = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
                n, "big"
            )
        opcode = b0 & 0x0F
        if opcode >= 8:  # control frames are never fragmented and may come in between
            return opcode, payload
        data += payload
        if b0 & 0x80:
            return opcode or 2, data


class PortForward:
    """Forward ``127.0.0.1:local_port`` to ``namespace/pod:remote_port`` until ``stop()``."""

    def __init__(
        self,
        endpoint: HostEndpoint,
        namespace: str,
        pod: str,
        remote_port: int,
        local_port: int = 0,
        *,
        spare: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.namespace = namespace
        self.pod = pod
        self.remote_port = remote_port
        self.local_port = local_port
        self.connections = 0  # tunnels opened
        self.failures = 0  # tunnels that could not be opened
        self.last_error = ""
        self.open_tunnels = 0
        self._loop_server = LoopServer(
            self._serve,
            "127.0.0.1",
            local_port,
            name=f"port-forward-{pod}-{remote_port}",
            on_start=self._refill,
            on_stop=self._drop_spare,
        )
        # One tunnel opened ahead of the next connection (its set-up is most of a new
        # connection's cost); dropped when older than SPARE_SECONDS, before the API server's
        # handshake timeout would close it.
        self.spare = spare
        self._spare: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
        self._spare_at = 0.0
        self.spares_used = 0

    def start(self) -> int:
        try:
            self.local_port = self._loop_server.start()
        except OSError as exc:
            raise PortForwardError(
                f"cannot listen on 127.0.0.1:{self.local_port} for {self.pod}: {exc}"
            ) from None
        return self.local_port

    def stop(self) -> None:
        self._loop_server.stop()

    def check(self, timeout: float = 10.0) -> None:
        """Open one tunnel and close it: raises PortForwardError with the host's answer."""
        loop = self._loop_server.loop
        if loop is None:
            raise PortForwardError("port-forward not started")
        future = asyncio.run_coroutine_threadsafe(self._probe(), loop)
        future.result(timeout)

    async def _probe(self) -> None:
        _, writer = await self._tunnel()
        writer.close()

    # -- one local connection
    async def _tunnel(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ep = self.endpoint
        loop = asyncio.get_running_loop()
        headers = await loop.run_in_executor(None, ep.headers)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                ep.host, ep.port, ssl=ep.ssl_context,
                server_hostname=ep.host if ep.ssl_context else None,
            ),
            30,
        )  # fmt: skip
        key = base64.b64encode(os.urandom(16)).decode()
        host = f"[{ep.host}]" if ":" in ep.host else ep.host
        lines = [
            f"GET /api/v1/namespaces/{self.namespace}/pods/{self.pod}/portforward"
            f"?ports={self.remote_port} HTTP/1.1",
            f"Host: {host}:{ep.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Protocol: {PROTOCOL}",
            "User-Agent: pytest-vcluster-port-forward",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            status = int(head.split(b" ", 2)[1])
            if status != 101:
                body = await asyncio.wait_for(reader.read(4096), 5)
                raise PortForwardError(
                    f"port-forward to {self.namespace}/{self.pod}:{self.remote_port}: "
                    f"the host answered {status}: {body.decode(errors='replace')[:500]}"
                )
            # The first frame of the data and the error channel name the port.
            for _ in range(2):
                opcode, _ = await asyncio.wait_for(read_frame(reader), 30)
                if opcode == 8:
                    raise PortForwardError(f"port-forward to {self.pod}: closed at start")
        except BaseException:
            writer.close()
            raise
        return reader, writer

    # -- the spare tunnel
    def _refill(self) -> None:
        if self.spare and self._loop_server.serving:
            self._spare = asyncio.ensure_future(self._tunnel())
            self._spare.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._spare_at = time.monotonic()

    def _drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is None:
            return
        if spare.done() and not spare.cancelled() and spare.exception() is None:
            spare.result()[1].close()
        else:
            spare.cancel()

    def _take_spare(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The spare tunnel if it is ready and still quiet (anything it said before our first
        byte is an error frame or its end), then a new spare is opened."""
        spare = self._spare
        if spare is None or not spare.done():
            return None  # still opening: a new tunnel is no slower than waiting for it
        self._spare = None
        fresh = time.monotonic() - self._spare_at < SPARE_SECONDS
        ok = not spare.cancelled() and spare.exception() is None
        self._refill()
        if not ok:
            return None
        reader, writer = spare.result()
        if not fresh or reader.at_eof() or len(getattr(reader, "_buffer", b"")):
            writer.close()
            return None
        self.spares_used += 1
        return reader, writer

    async def _serve(self, local_r: asyncio.StreamReader, local_w: asyncio.StreamWriter) -> None:
        writers = [local_w]
        try:
            try:
                remote_r, remote_w = self._take_spare() or await self._tunnel()
            except (OSError, PortForwardError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.failures += 1
                self.last_error = str(exc)
                log.warning("%s", exc)
                return
            writers.append(remote_w)
            self.connections += 1
            self.open_tunnels += 1
            up = asyncio.ensure_future(self._up(local_r, remote_w))
            down = asyncio.ensure_future(self._down(remote_r, remote_w, local_w))
            try:
                await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            finally:  # one side ended (or stop()): end the other, collect both
                for t in (up, down):
                    t.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
                self.open_tunnels -= 1
        except asyncio.CancelledError:
            pass
        finally:
            for w in writers:
                w.close()
            for w in writers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(w.wait_closed(), 2)

    @staticmethod
    async def _up(local: asyncio.StreamReader, remote: asyncio.StreamWriter) -> None:
        while data := await local.read(_CHUNK):
            remote.write(frame(2, b"\x00" + data, os.urandom(4)))
            await remote.drain()
        remote.write(frame(8, struct.pack("!H", 1000), os.urandom(4)))
        await remote.drain()

    async def _down(
        self,
        remote: asyncio.StreamReader,
        remote_w: asyncio.StreamWriter,
        local: asyncio.StreamWriter,
    ) -> None:
        while True:
            opcode, payload = await read_frame(remote)
            if opcode == 8:  # close
                return
            if opcode == 9:  # ping
                remote_w.write(frame(10, payload, os.urandom(4)))
                continue
            if opcode not in (1, 2) or not payload:
                continue
            channel, data = payload[0], payload[1:]
            if channel == 0:
                local.write(data)
                await local.drain()
            elif channel == 1 and data:  # the error channel: this connection failed
                self.last_error = data.decode(errors="replace")
                log.info("port-forward %s:%s: %s", self.pod, self.remote_port, self.last_error)
                return


def stats(forwards: list[PortForward]) -> dict[str, Any]:
    return {
        "connections": sum(f.connections for f in forwards),
        "failures": sum(f.failures for f in forwards),
        "open": sum(f.open_tunnels for f in forwards),
        "last_error": next((f.last_error for f in forwards if f.last_error), ""),
    }
