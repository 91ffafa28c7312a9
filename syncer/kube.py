"""A small JSON client for one API server: plain dicts, streaming watches, typed errors.

The generated ``kubernetes`` models cost more to build than the syncing itself at thousands of
objects; the syncer only needs dicts, so it speaks HTTP/1.1 with keep-alive itself (a pool of
TLS sockets) and borrows ``kubernetes.config`` only to read kubeconfigs and in-cluster config.
Per request this costs ~0.3 ms of CPU where urllib3 cost ~1.4 ms and http.client ~0.7 ms
(header parsing through the email package): a synced pod takes about ten requests, so the HTTP
client was the largest part of the syncer's CPU per pod. JSON goes through orjson when it is
installed (the standard json module otherwise).

(Near 500 lines for one job, talking HTTP/1.1 to an API server: framing, the connection pool,
credentials that rotate, Retry-After, watch streams. Split, each part would need the others'
private state.)
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

JSON = dict[str, Any]

try:
    import orjson  # type: ignore[import-not-found, unused-ignore]  # optional, not a dependency

    def _loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    def _dumps(obj: Any) -> bytes:
        return bytes(orjson.dumps(obj))

except ImportError:  # pragma: no cover - the syncer image may lack it

    def _loads(data: bytes | str) -> Any:
        return json.loads(data)

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


def timestamp() -> str:
    """Now, as the API's timestamps are written (RFC 3339, seconds, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def request_kind(method: str, target: str) -> str:
    """A request's verb and resource, for counting: ``POST pods/binding``, ``GET pods``,
    ``WATCH events`` (a GET with ``watch=true``); names, namespaces and API groups dropped."""
    path, _, query = target.partition("?")
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return f"{method} {path}"
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]  # a namespaced resource (a bare "namespaces/NAME" stays namespaces)
    resource = rest[0] if rest else ""
    if len(rest) >= 3:
        resource += "/" + rest[2]
    if method == "GET" and "watch=true" in query:
        method = "WATCH"
    return f"{method} {resource}"


class ApiError(Exception):
    def __init__(
        self, status: int, body: Any, method: str, path: str, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After)
        reason = body.get("message") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path}: {status} {reason}")

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", "")) if isinstance(self.body, dict) else ""


class ProtocolError(ConnectionError):
    """The server broke HTTP/1.1 framing or closed the connection mid-response."""


_STALE = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)
_NO_RESPONSE = "connection closed before the response"


def _stale(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection was dead before the server saw the request."""
    return isinstance(exc, _STALE) or (isinstance(exc, ProtocolError) and str(exc) == _NO_RESPONSE)


class _Conn:
    """One keep-alive connection: a socket and a buffered reader on it."""

    __slots__ = ("reused", "rfile", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.reused = False

    def close(self) -> None:
        for closer in (self.rfile.close, self.sock.close):
            with contextlib.suppress(OSError):
                closer()


def _retry_after(value: bytes) -> float | None:
    """Retry-After in seconds (the API server sends whole seconds; an HTTP date is ignored)."""
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


class _Response:
    __slots__ = ("chunked", "close", "conn", "length", "retry_after", "status")

    def __init__(self, conn: _Conn, method: str) -> None:
        self.conn = conn
        line = conn.rfile.readline(65537)
        if not line:
            raise ProtocolError(_NO_RESPONSE)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {line[:100]!r}")
        self.status = int(parts[1])
        self.length: int | None = None
        self.chunked = False
        self.retry_after: float | None = None
        self.close = parts[0] == b"HTTP/1.0"
        while True:
            header = conn.rfile.readline(65537)
            if header in (b"\r\n", b"\n"):
                break
            if not header:
                raise ProtocolError("connection closed in the headers")
            name, _, value = header.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                self.length = int(value)
            elif name == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif name == b"connection":
                self.close = b"close" in value.lower()
            elif name == b"retry-after":
                self.retry_after = _retry_after(value)
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self.length = 0
        elif self.length is None and not self.chunked:
            self.close = True  # body until EOF

    def read(self) -> bytes:
        rfile = self.conn.rfile
        if self.chunked:
            return b"".join(self.chunks())
        if self.length is None:
            return rfile.read()
        data = rfile.read(self.length)
        if len(data) != self.length:
            raise ProtocolError("connection closed in the body")
        return data

    def chunks(self) -> Iterator[bytes]:
        rfile = self.conn.rfile
        while True:
            size_line = rfile.readline(1026)
            if not size_line:
                raise ProtocolError("connection closed in a chunked body")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return
            data = rfile.read(size)
            if len(data) != size:
                raise ProtocolError("connection closed in a chunk")
            rfile.readline(3)  # CRLF after the chunk
            yield data


class Kube:
    """One API server. Thread-safe: each request takes a connection from a shared pool.

    ``token_file``: a bearer token read from this file (in-cluster: the pod's projected
    ServiceAccount token, which the kubelet rotates) is read again every ``token_refresh``
    seconds, as client-go does, and at once when the server answers 401. A 429 (or a 5xx)
    carrying ``Retry-After`` is sent again after that many seconds (at most
    ``max_retry_wait`` each, ``max_retries`` times): the server did not process it.
    """

    def __init__(
        self,
        server: str,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
        token_refresh: float = 60.0,
        verify: bool = True,
        name: str = "kube",
        maxsize: int = 64,
        max_retries: int = 3,
        max_retry_wait: float = 10.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.name = name
        self.ca_file = ca_file
        url = urlsplit(self.server)
        self._tls = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._tls else 80)
        self._prefix = url.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        default = (self._tls and self._port == 443) or (not self._tls and self._port == 80)
        self._host_header = host if default else f"{host}:{self._port}"
        self._head = (
            f"Host: {self._host_header}\r\nAccept: application/json\r\n"
            "User-Agent: pytest-vcluster-syncer\r\n"
        )
        self._token_file = token_file
        self._token_refresh = token_refresh
        self._token_read_at = time.monotonic()
        self._authorization = ""
        self._set_token(token)
        if token_file and not token:
            self._reload_token()
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._ctx: ssl.SSLContext | None = None
        if self._tls:
            ctx = ssl.create_default_context(cafile=ca_file)
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if cert_file:
                ctx.load_cert_chain(cert_file, key_file)
            self._ctx = ctx
        self._maxsize = maxsize
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self.requests = 0  # requests sent (metrics)
        self.by_kind: Counter[str] = Counter()  # the same, per request_kind()

    @classmethod
    def from_kubeconfig(cls, path: str | None, *, context: str | None = None, name: str) -> Kube:
        """From a kubeconfig file, or in-cluster config when ``path`` is None."""
        from kubernetes import client, config

        cfg = client.Configuration()
        token_file = None
        if path:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=cfg
            )
        else:
            from kubernetes.config.incluster_config import SERVICE_TOKEN_FILENAME

            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            token_file = SERVICE_TOKEN_FILENAME  # projected: rotated by the kubelet
        token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        return cls(
            cfg.host,
            ca_file=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            token=token,
            token_file=token_file,
            verify=cfg.verify_ssl,
            name=name,
        )

    # -- credentials
    def _set_token(self, token: str | None) -> None:
        token = (token or "").strip()
        value = (token if " " in token else f"Bearer {token}") if token else ""
        self._authorization = f"Authorization: {value}\r\n" if value else ""

    def _reload_token(self) -> bool:
        """Read ``token_file`` again; whether the token changed."""
        assert self._token_file is not None
        before = self._authorization
        self._token_read_at = time.monotonic()
        try:
            with open(self._token_file) as fh:
                self._set_token(fh.read())
        except OSError:  # being rotated (atomic rename): keep the one we have
            return False
        return self._authorization != before

    def _auth_line(self) -> str:
        if self._token_file and time.monotonic() - self._token_read_at >= self._token_refresh:
            self._reload_token()
        return self._authorization

    # -- connections
    def endpoint(self) -> tuple[str, int, ssl.SSLContext | None, list[tuple[str, str]]]:
        """Where and as whom to open a raw connection (the kubelet proxy's streams): host,
        port, TLS context (None: plain HTTP), and the Host and Authorization headers."""
        identity = [("Host", self._host_header)]
        auth = self._auth_line()
        if auth:
            identity.append(("Authorization", auth.split(": ", 1)[1].rstrip()))
        return self._host, self._port, self._ctx, identity

    @property
    def path_prefix(self) -> str:
        return self._prefix

    def _connect(self, timeout: float) -> _Conn:
        sock = socket.create_connection((self._host, self._port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ctx is not None:
                sock = self._ctx.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        return _Conn(sock)

    def _take(self, timeout: float) -> _Conn:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return self._connect(timeout)
        conn.sock.settimeout(timeout)
        conn.reused = True
        return conn

    def _give(self, conn: _Conn) -> None:
        with self._lock:
            if len(self._idle) < self._maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _send(self, method: str, target: str, data: bytes | None, content_type: str) -> bytes:
        head = f"{method} {self._prefix}{target} HTTP/1.1\r\n{self._head}{self._auth_line()}"
        if data is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
        return (head + "\r\n").encode() + (data or b"")

    def _open(
        self, method: str, target: str, data: bytes | None, content_type: str, timeout: float
    ) -> _Response:
        message = self._send(method, target, data, content_type)
        self.requests += 1
        self.by_kind[request_kind(method, target)] += 1
        while True:
            conn = self._take(timeout)
            try:
                conn.sock.sendall(message)
                return _Response(conn, method)
            except (ConnectionError, ssl.SSLError) as exc:
                conn.close()
                # The server may close an idle keep-alive connection at any time; a request
                # that got no response on a reused one was not processed: send it anew.
                if conn.reused and _stale(exc):
                    continue
                raise
            except BaseException:
                conn.close()
                raise

    def _release(self, resp: _Response) -> bytes:
        """Read the body and return the connection to the pool (or close it)."""
        try:
            raw = resp.read()
        except BaseException:
            resp.conn.close()
            raise
        if resp.close:
            resp.conn.close()
        else:
            self._give(resp.conn)
        return raw

    def _answered(
        self, method: str, target: str, data: bytes | None, content_type: str, timeout: float
    ) -> _Response:
        """A response worth handing on: a 401 after the token file changed is sent again with
        the new token; a 429/5xx with Retry-After after the wait it asks for."""
        retried_auth = False
        waits = 0
        while True:
            resp = self._open(method, target, data, content_type, timeout)
            again = False
            if resp.status == 401 and self._token_file and not retried_auth:
                retried_auth = again = self._reload_token()
            wait = resp.retry_after
            if not again and wait is not None and (resp.status == 429 or resp.status >= 500):
                again = waits < self.max_retries
                waits += 1
            if not again:
                return resp
            self._release(resp)
            if resp.status != 401:
                time.sleep(min(wait or 0.0, self.max_retry_wait))

    # -- plain requests
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        target = quote(path, safe="/:@!$&'()*+,;=-._~") + (
            ("?" + urlencode(params)) if params else ""
        )
        data = None if body is None else _dumps(body)
        resp = self._answered(method, target, data, content_type, timeout)
        raw = self._release(resp)
        try:
            decoded = _loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        if resp.status >= 400:
            raise ApiError(resp.status, decoded, method, path, resp.retry_after)
        return decoded

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: JSON) -> JSON:
        result: JSON = self.request("POST", path, body)
        return result

    def merge_patch(self, path: str, patch: JSON) -> JSON:
        result: JSON = self.request(
            "PATCH", path, patch, content_type="application/merge-patch+json"
        )
        return result

    def replace(self, path: str, body: JSON) -> JSON:
        result: JSON = self.request("PUT", path, body)
        return result

    def delete(self, path: str, *, grace: int | None = None, uid: str | None = None) -> JSON | None:
        body: JSON = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            result: JSON | None = self.request("DELETE", path, body)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    # -- watch
    def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int, params: Mapping[str, Any]
    ) -> Iterator[JSON]:
        """Stream watch events; ends when the server closes the stream (timeout) or on error.

        The read timeout is a little longer than the server-side timeout: a stream that has
        been silent that long (not even a bookmark) is dead and is reconnected.
        """
        query = {
            **params,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        target = f"{quote(path)}?{urlencode(query)}"
        resp = self._answered("GET", target, None, "", timeout_seconds + 30)
        clean = False
        try:
            if resp.status >= 400:
                data = resp.read()
                try:
                    body = _loads(data)
                except ValueError:
                    body = data.decode(errors="replace")
                raise ApiError(resp.status, body, "WATCH", path, resp.retry_after)
            if resp.chunked:
                buf = b""
                for chunk in resp.chunks():
                    buf = buf + chunk if buf else chunk
                    if b"\n" not in buf:
                        continue
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield _loads(line)
                if buf.strip():
                    yield _loads(buf)
                clean = not resp.close
            else:
                for line in resp.read().split(b"\n"):
                    if line.strip():
                        yield _loads(line)
        finally:
            if clean:
                self._give(resp.conn)
            else:
                resp.conn.close()
