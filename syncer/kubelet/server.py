"""The kubelet API of every fake node: a TLS server that forwards to the host pods.

The virtual kube-apiserver reaches a fake node at the address and port the syncer writes into
its status (``status.addresses``, ``status.daemonEndpoints.kubeletEndpoint``), authenticating
with its kubelet client certificate. This server accepts that one certificate only (pinned by
its SHA-256, on top of the CA check: the vcluster's CA also signs certificates its users may
obtain), maps the path to the host pod (``routes.py``) and sends the request to the host API
server with the syncer's own credentials. From there on the bytes are piped both ways
unchanged: whatever the two API servers negotiate (SPDY/3.1, WebSocket ``v4``/``v5.channel``,
port-forward tunnels) passes through, so there is no protocol code here to get wrong. A log
stream is piped as it comes (never buffered whole); a slow reader slows the writer
(``drain``); when either side closes, both are closed.

It runs in one asyncio loop on its own thread: asyncio's TLS works on memory BIOs, where two
threads reading and writing one ``ssl.SSLSocket`` would share one OpenSSL object unsafely.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from ..core.aioloop import LoopServer
from ..kube import Kube
from .routes import Route, RouteError, route, virtual_message
from .spare import Conn, Spare

log = logging.getLogger("syncer.kubelet")

_CHUNK = 256 * 1024
_HEAD_LIMIT = 64 * 1024
_ERROR_BODY_LIMIT = 64 * 1024
# Headers the proxy sets itself or that belong to one hop only (RFC 9110 7.6.1).
_DROP = frozenset(
    {
        "host",
        "authorization",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "impersonate-user",
        "impersonate-group",
        "impersonate-uid",
    }
)
SIMULATED = (
    "pod {namespace}/{pod} runs on the simulated local host (kwok fake nodes): logs, exec, "
    "attach and port-forward need real containers (--vcluster-host=kind or kubeconfig)"
)


@dataclass(frozen=True)
class KubeletConfig:
    listen_host: str
    listen_port: int
    cert_file: str
    key_file: str
    client_ca_file: str
    client_cert_file: str  # the virtual API server's kubelet client certificate (PEM)
    vcluster: str
    host_namespace: str
    simulated: bool = False  # host pods have no containers (the local host's kwok nodes)


def _pin(pem_file: str) -> bytes:
    with open(pem_file, "rb") as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read().decode())).digest()


def parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """(method, target, headers) of an HTTP/1.1 request head; ValueError when malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"bad request line {lines[0][:100]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line[:100]!r}")
        headers.append((name.strip(), value.strip()))
    return parts[0], parts[1], headers


def _header(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def response(status: int, message: str, *, json_status: bool) -> bytes:
    """A complete error response: a Status object for streaming calls (clients decode it from
    a refused upgrade), plain text for logs (the API server wraps it into its own Status)."""
    reason = HTTPStatus(status).phrase
    if json_status:
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason.replace(" ", ""),
                "code": status,
            }
        ).encode()
        kind = "application/json"
    else:
        body = message.encode()
        kind = "text/plain; charset=utf-8"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def echo_response(head: bytes, body: str) -> bytes:
    """The host's error response again: its status line and content type, a new body."""
    lines = head.decode("latin-1").split("\r\n")
    kind = next(
        (ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("content-type:")),
        "text/plain; charset=utf-8",
    )
    data = body.encode()
    out = f"{lines[0]}\r\nContent-Type: {kind}\r\nContent-Length: {len(data)}\r\n"
    return (out + "Connection: close\r\n\r\n").encode("latin-1") + data


def host_request(
    method: str,
    r: Route,
    headers: list[tuple[str, str]],
    identity: list[tuple[str, str]],
    prefix: str = "",
) -> bytes:
    """The request to the host API server: the caller's end-to-end headers, our identity."""
    upgrade = bool(_header(headers, "upgrade"))
    # A log is asked in HTTP/1.0, so its body comes unchunked, ended by the close. Relayed
    # chunked, the last data chunk and the final empty one reach the API server in one TLS
    # record, its reader returns them as one read with io.EOF, and its WebSocket log writer
    # (wsstream's messageCopy) drops the data of a read that returns EOF: the whole log of a
    # container that has ended writing is lost (conformance: "Pods should support retrieving
    # logs from the container over websockets").
    lines = [f"{method} {prefix}{r.host_target} {'HTTP/1.1' if upgrade else 'HTTP/1.0'}"]
    lines += [f"{k}: {v}" for k, v in identity]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _DROP]
    # One request per connection: the end of the host's response is the end of ours.
    lines.append("Connection: Upgrade" if upgrade else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def host_error_message(body: bytes) -> str:
    """The message of a host API error (a Status object, else its text)."""
    text = body.decode(errors="replace")
    with contextlib.suppress(ValueError):
        obj = json.loads(text)
        if isinstance(obj, dict) and obj.get("message"):
            return str(obj["message"])
    return text.strip()


async def _read_body(reader: asyncio.StreamReader, head: bytes, limit: int) -> bytes:
    """The body of a (small, error) response: by length, chunks, or until EOF; capped."""
    _, _, headers = parse_head(b"GET / HTTP/1.1\r\n" + head.split(b"\r\n", 1)[1])
    length = _header(headers, "content-length")
    if length:
        return await reader.readexactly(min(int(length), limit))
    if "chunked" in _header(headers, "transfer-encoding").lower():
        out = b""
        while len(out) < limit:
            size = int((await reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                break
            out += await reader.readexactly(size)
            await reader.readline()
        return out[:limit]
    return await reader.read(limit)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while True:
        data = await src.read(_CHUNK)
        if not data:
            return
        dst.write(data)
        await dst.drain()  # back-pressure: a slow reader stops this side reading


class KubeletServer:
    """Start with ``start()`` (returns the bound port), stop with ``stop()``."""

    def __init__(self, config: KubeletConfig, host: Kube) -> None:
        self.config = config
        self.host = host
        self._pin = _pin(config.client_cert_file)
        self._ctx = ssl.create_default_context(
            ssl.Purpose.CLIENT_AUTH, cafile=config.client_ca_file
        )
        self._ctx.load_cert_chain(config.cert_file, config.key_file)
        self._ctx.verify_mode = ssl.CERT_REQUIRED
        self._loop_server = LoopServer(
            self._serve,
            config.listen_host,
            config.listen_port,
            name="kubelet-server",
            ssl_context=self._ctx,
            ssl_handshake_timeout=10,
            limit=_HEAD_LIMIT,
            on_stop=self._close_spare,
        )
        self.spare = Spare()
        self.port = 0
        self.open_connections = 0  # calls in progress (metrics; leak checks)
        self.open_calls: dict[str, int] = {}  # of those, by verb once routed
        self.calls: dict[str, int] = {}

    # -- lifecycle
    def start(self) -> int:
        self.port = self._loop_server.start()
        return self.port

    def stop(self) -> None:
        self._loop_server.stop()

    def _close_spare(self) -> None:
        self.spare.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        closers: list[asyncio.StreamWriter] = [writer]
        try:
            await self._call(reader, writer, closers)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError) as exc:
            log.debug("kubelet call ended: %s", exc)
        except asyncio.CancelledError:
            pass
        except Exception:  # one broken call must not stop the server
            log.exception("kubelet call failed")
        finally:
            try:
                for w in closers:
                    with contextlib.suppress(Exception):
                        w.close()  # flushes what is buffered, then TLS close_notify
                for w in closers:
                    try:
                        await asyncio.wait_for(w.wait_closed(), 2)
                    except asyncio.CancelledError:  # the server stops: drop, and go on stopping
                        w.transport.abort()
                        raise
                    except Exception:  # a peer that never answers close_notify
                        w.transport.abort()
            finally:  # counted out however the closing went (the leak check reads it)
                self.open_connections -= 1

    async def _call(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        closers: list[asyncio.StreamWriter],
    ) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None or hashlib.sha256(der).digest() != self._pin:
            writer.write(
                response(
                    403,
                    "only the vcluster's API server may call the kubelet API of its fake nodes",
                    json_status=True,
                )
            )
            await writer.drain()
            return
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            method, target, headers = parse_head(head[:-4])
        except (asyncio.LimitOverrunError, ValueError, TimeoutError) as exc:
            writer.write(response(400, f"bad request: {exc}", json_status=False))
            await writer.drain()
            return
        try:
            r = route(
                target, vcluster=self.config.vcluster, host_namespace=self.config.host_namespace
            )
        except RouteError as exc:
            writer.write(response(exc.status, exc.message, json_status=False))
            await writer.drain()
            return
        self.calls[r.verb] = self.calls.get(r.verb, 0) + 1
        self.open_calls[r.verb] = self.open_calls.get(r.verb, 0) + 1
        try:
            await self._forward(r, method, headers, reader, writer, closers)
        finally:
            self.open_calls[r.verb] -= 1

    async def _forward(
        self,
        r: Route,
        method: str,
        headers: list[tuple[str, str]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        closers: list[asyncio.StreamWriter],
    ) -> None:
        if self.config.simulated:
            message = SIMULATED.format(namespace=r.namespace, pod=r.pod)
            writer.write(response(400, message, json_status=r.streaming))
            await writer.drain()
            return
        host, port, ctx, identity = self.host.endpoint()

        def connect() -> Awaitable[Conn]:
            opened = asyncio.open_connection(
                host, port, ssl=ctx, server_hostname=host if ctx else None, limit=_HEAD_LIMIT
            )
            return asyncio.wait_for(opened, 30)

        host_reader, host_writer = await self.spare.take((host, port, id(ctx)), connect)
        closers.append(host_writer)
        host_writer.write(host_request(method, r, headers, identity, self.host.path_prefix))
        await host_writer.drain()
        # The caller's bytes after the head (a body; after an upgrade, its side of the stream).
        up = asyncio.ensure_future(_pipe(reader, host_writer))
        try:
            resp_head = await host_reader.readuntil(b"\r\n\r\n")
            status = int(resp_head.split(b" ", 2)[1])
            if status >= 400:
                body = await _read_body(host_reader, resp_head[:-4], _ERROR_BODY_LIMIT)
                if r.streaming:
                    # The host echoes the kubelet's refusal of an upgrade as it came; so do we
                    # (names turned back), and clients print what a real cluster makes them.
                    writer.write(
                        echo_response(resp_head, virtual_message(body.decode(errors="replace"), r))
                    )
                else:  # a log: the API server wraps the kubelet's text into its own Status
                    message = virtual_message(host_error_message(body), r)
                    writer.write(response(status, message, json_status=False))
                await writer.drain()
                return
            writer.write(resp_head)
            down = asyncio.ensure_future(_pipe(host_reader, writer))
            await _first(up, down)
        finally:
            up.cancel()
            with contextlib.suppress(BaseException):
                await up


async def _first(*tasks: Awaitable[Any]) -> None:
    """Wait until one side ends (EOF or error), then stop the other."""
    futures = [asyncio.ensure_future(t) for t in tasks]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in futures:
            if not f.done():
                f.cancel()
        for f in futures:
            with contextlib.suppress(BaseException):
                await f
