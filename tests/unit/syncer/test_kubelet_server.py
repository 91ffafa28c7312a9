"""The fake nodes' kubelet server against a scripted host API server (plain HTTP on 127.0.0.1).

What the real API servers do with it (SPDY, WebSocket, RBAC) is tested on kind
(tests/e2e/test_kubelet_api_e2e.py); here: the pinned client certificate, streaming without
buffering, byte-exact piping after an upgrade, error translation, and that every connection
is closed when either side goes away.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_vcluster import pki
from syncer.kube import Kube
from syncer.kubelet.server import KubeletConfig, KubeletServer
from syncer.translate.names import host_name

NS = "vcluster-vc1"


@dataclass
class HostScript:
    """What the scripted host saw and how it answers."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    second_line: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)


def _read_head(f: socket.SocketIO | object) -> tuple[str, dict[str, str]] | None:
    """The request's target and headers; None for a connection closed before a request (the
    proxy's spare connection, dropped unused)."""
    rfile = f
    line = rfile.readline().decode()  # type: ignore[attr-defined]
    if not line.strip():
        return None
    headers: dict[str, str] = {}
    while True:
        h = rfile.readline().decode()  # type: ignore[attr-defined]
        if h in ("\r\n", ""):
            break
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    return line.split(" ")[1], headers


class _Handler(socketserver.StreamRequestHandler):
    script: HostScript

    def handle(self) -> None:
        head = _read_head(self.rfile)
        if head is None:
            return
        target, headers = head
        self.script.requests.append((target, headers))
        w = self.wfile
        if "/pods/slow" in target:  # a log stream: one line now, one when the test says
            w.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            w.write(b"6\r\nfirst\n\r\n")
            w.flush()
            if self.script.second_line.wait(10):
                w.write(b"7\r\nsecond\n\r\n0\r\n\r\n")
                w.flush()
        elif "/pods/endless" in target:  # streams until the reader goes away
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(2000):
                    w.write(b"5\r\ntick\n\r\n")
                    w.flush()
                    time.sleep(0.005)
            except OSError:
                self.script.closed.set()
        elif "/pods/waiting" in target:
            pod = target.split("/pods/")[1].split("/")[0]
            body = json.dumps(
                {
                    "kind": "Status",
                    "status": "Failure",
                    "code": 400,
                    "reason": "BadRequest",
                    "message": f'container "c" in pod "{pod}" is waiting to start: '
                    "ContainerCreating",
                }
            ).encode()
            w.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        elif "/pods/notrunning" in target:  # a kubelet's refusal, echoed by the host
            body = b'container not found ("c")'
            w.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        elif headers.get("upgrade"):  # an echo tunnel, as a stream protocol would be
            w.write(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                b"Upgrade: " + headers["upgrade"].encode() + b"\r\n\r\n"
            )
            w.flush()
            while True:
                data = self.rfile.read1(65536)  # type: ignore[attr-defined]
                if not data:
                    break
                w.write(data)
                w.flush()
            self.script.closed.set()


@pytest.fixture
def host() -> Iterator[tuple[Kube, HostScript]]:
    script = HostScript()
    handler = type("H", (_Handler,), {"script": script})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kube = Kube(f"http://127.0.0.1:{server.server_address[1]}", token="host-token", name="host")
    yield kube, script
    server.shutdown()
    server.server_close()


@dataclass
class Certs:
    dir: Path
    ca: pki.CertificateAuthority

    def client(self, name: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
        ctx.load_cert_chain(str(self.dir / f"{name}.crt"), str(self.dir / f"{name}.key"))
        return ctx


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    ca = pki.CertificateAuthority("test-ca")
    ca.pair.write(tmp_path, "ca")
    ca.issue("kubelet", ips=("127.0.0.1",), server=True).write(tmp_path, "serving")
    ca.issue("kube-apiserver-kubelet-client", client=True).write(tmp_path, "apiserver")
    # Same CA, same CN: what a vcluster user could get signed through the CSR API.
    ca.issue("kube-apiserver-kubelet-client", client=True).write(tmp_path, "impostor")
    return Certs(tmp_path, ca)


def _server(certs: Certs, kube: Kube, simulated: bool = False) -> KubeletServer:
    d = certs.dir
    return KubeletServer(
        KubeletConfig(
            listen_host="127.0.0.1",
            listen_port=0,
            cert_file=str(d / "serving.crt"),
            key_file=str(d / "serving.key"),
            client_ca_file=str(d / "ca.crt"),
            client_cert_file=str(d / "apiserver.crt"),
            vcluster="vc1",
            host_namespace=NS,
            simulated=simulated,
        ),
        kube,
    )


@pytest.fixture
def kubelet(certs: Certs, host: tuple[Kube, HostScript]) -> Iterator[KubeletServer]:
    server = _server(certs, host[0])
    server.start()
    yield server
    server.stop()


def _connect(certs: Certs, port: int, who: str = "apiserver") -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return certs.client(who).wrap_socket(sock, server_hostname="127.0.0.1")


def _request(sock: ssl.SSLSocket, target: str, *extra: str, method: str = "GET") -> None:
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Authorization: Bearer caller"]
    sock.sendall(("\r\n".join([*head, *extra]) + "\r\n\r\n").encode())


def _read_until(sock: ssl.SSLSocket, marker: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    while marker not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _wait(cond: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_only_the_api_servers_certificate_is_accepted(
    certs: Certs, kubelet: KubeletServer, host: tuple[Kube, HostScript]
) -> None:
    sock = _connect(certs, kubelet.port, "impostor")
    _request(sock, "/containerLogs/default/slow/c")
    reply = _read_until(sock, b"}")
    assert reply.startswith(b"HTTP/1.1 403")
    assert b"only the vcluster's API server" in reply
    assert host[1].requests == []  # nothing reached the host


def test_a_client_without_certificate_is_refused(certs: Certs, kubelet: KubeletServer) -> None:
    sock = socket.create_connection(("127.0.0.1", kubelet.port), timeout=10)
    ctx = ssl.create_default_context(cafile=str(certs.dir / "ca.crt"))

    def attempt() -> None:
        tls = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        _request(tls, "/containerLogs/default/slow/c")
        if not tls.recv(100):  # TLS 1.3: the refusal may come with the first read
            raise ConnectionResetError("closed")

    with pytest.raises((ssl.SSLError, ConnectionError)):
        attempt()


def test_log_stream_is_forwarded_as_it_comes(
    certs: Certs, kubelet: KubeletServer, host: tuple[Kube, HostScript]
) -> None:
    script = host[1]
    sock = _connect(certs, kubelet.port)
    _request(sock, "/containerLogs/default/slow/c?follow=true&tailLines=5")
    first = _read_until(sock, b"first\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert b"first\n" in first
    assert b"second" not in first  # before the host has finished
    script.second_line.set()
    rest = _read_until(sock, b"0\r\n\r\n")
    assert b"second\n" in rest
    target, headers = script.requests[0]
    assert target == (
        f"/api/v1/namespaces/{NS}/pods/{host_name('slow', 'default', 'vc1')}/log"
        "?container=c&follow=true&tailLines=5"
    )
    assert headers["authorization"] == "Bearer host-token"  # ours, never the caller's
    assert headers["connection"] == "close"
    assert _wait(lambda: kubelet.open_connections == 0)


def test_host_errors_come_back_with_virtual_names(certs: Certs, kubelet: KubeletServer) -> None:
    sock = _connect(certs, kubelet.port)
    _request(sock, "/containerLogs/default/waiting/c")
    reply = _read_until(sock, b"ContainerCreating")
    assert reply.startswith(b"HTTP/1.1 400")
    assert reply.endswith(b'container "c" in pod "waiting" is waiting to start: ContainerCreating')


def test_a_refused_upgrade_is_echoed_as_the_kubelet_sent_it(
    certs: Certs, kubelet: KubeletServer
) -> None:
    """Clients word a refused upgrade by its body: a kubelet's text stays text."""
    sock = _connect(certs, kubelet.port)
    _request(
        sock,
        "/exec/default/notrunning/c?command=true&output=1",
        "Connection: Upgrade",
        "Upgrade: SPDY/3.1",
        method="POST",
    )
    reply = _read_until(sock, b'("c")')
    assert reply.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"Content-Type: text/plain; charset=utf-8\r\n" in reply
    assert reply.endswith(b'\r\n\r\ncontainer not found ("c")')


def test_upgraded_stream_is_piped_both_ways_byte_exact(
    certs: Certs, kubelet: KubeletServer, host: tuple[Kube, HostScript]
) -> None:
    script = host[1]
    sock = _connect(certs, kubelet.port)
    _request(
        sock,
        "/exec/default/web/c?command=cat&input=1&output=1",
        "Connection: Upgrade",
        "Upgrade: SPDY/3.1",
        "X-Stream-Protocol-Version: v5.channel.k8s.io",
        "X-Stream-Protocol-Version: v4.channel.k8s.io",
        method="POST",
    )
    head = _read_until(sock, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    payload = bytes(range(256)) * 4096  # 1 MiB
    received = bytearray()

    def reader() -> None:
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                return
            received.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    sock.sendall(payload)
    t.join(30)  # bounds only a failure: 1 MiB through TLS twice on a loaded 2-core machine
    assert bytes(received) == payload
    target, headers = script.requests[0]
    assert target.endswith("/exec?container=c&command=cat&stdin=true&stdout=true")
    assert headers["upgrade"] == "SPDY/3.1"
    assert headers["connection"] == "Upgrade"
    sock.close()  # the caller goes away: the host side is closed too
    assert script.closed.wait(10)
    assert _wait(lambda: kubelet.open_connections == 0)


def test_caller_going_away_closes_the_host_stream(
    certs: Certs, kubelet: KubeletServer, host: tuple[Kube, HostScript]
) -> None:
    sock = _connect(certs, kubelet.port)
    _request(sock, "/containerLogs/default/endless/c?follow=true")
    assert b"tick" in _read_until(sock, b"tick")
    sock.close()
    assert host[1].closed.wait(10)  # the host's writes failed: its stream was closed
    assert _wait(lambda: kubelet.open_connections == 0)


def test_node_paths_and_unknown_paths_are_clear_404s(
    certs: Certs, kubelet: KubeletServer, host: tuple[Kube, HostScript]
) -> None:
    for target in ("/stats/summary", "/nonsense"):
        sock = _connect(certs, kubelet.port)
        _request(sock, target)
        reply = _read_until(sock, b"serve")
        assert reply.startswith(b"HTTP/1.1 404"), reply
    assert host[1].requests == []


def test_simulated_host_answers_with_one_clear_error(
    certs: Certs, host: tuple[Kube, HostScript]
) -> None:
    server = _server(certs, host[0], simulated=True)
    server.start()
    try:
        for target, method in (
            ("/containerLogs/default/web/c", "GET"),
            ("/exec/default/web/c?command=ls&output=1", "POST"),
        ):
            sock = _connect(certs, server.port)
            _request(sock, target, method=method)
            reply = _read_until(sock, b"kubeconfig)")
            assert reply.startswith(b"HTTP/1.1 400")
            assert b"pod default/web runs on the simulated local host" in reply
            assert b"--vcluster-host=kind or kubeconfig" in reply
        assert host[1].requests == []
    finally:
        server.stop()


def test_stop_ends_open_streams(certs: Certs, host: tuple[Kube, HostScript]) -> None:
    server = _server(certs, host[0])
    server.start()
    sock = _connect(certs, server.port)
    _request(sock, "/containerLogs/default/slow/c?follow=true")
    assert b"first" in _read_until(sock, b"first")
    server.stop()
    # recv returns EOF (a stream left open would time out after 10 s and raise here)
    assert b"second" not in _read_until(sock, b"never")
    assert server.open_connections == 0
    host[1].second_line.set()
