"""The syncer's DNS check (``/readyz/dns``): the packets, and real UDP on 127.0.0.1 — an
answering server, an NXDOMAIN, a port nobody listens on (refused), a server that never answers."""

from __future__ import annotations

import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from syncer.core import dnsprobe
from syncer.core.metrics import Metrics, serve
from syncer.core.workqueue import WorkQueue


def reply(query: bytes, rcode: int = 0, answers: int = 1, flip_id: bool = False) -> bytes:
    qid = struct.unpack(">H", query[:2])[0] ^ (1 if flip_id else 0)
    head = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, answers, 0, 0)
    record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + bytes([10, 96, 0, 1])
    return head + query[12:] + record * answers


def test_query_packet_names_the_labels_and_asks_for_recursion() -> None:
    pkt = dnsprobe.query_packet("kubernetes.default.svc.cluster.local.", 0x1234)
    assert pkt[:4] == b"\x12\x34\x01\x00"
    assert b"\x0akubernetes\x07default\x03svc\x07cluster\x05local\x00" in pkt
    assert pkt.endswith(b"\x00\x01\x00\x01")  # A, IN


def test_query_packet_refuses_a_label_over_63_bytes() -> None:
    with pytest.raises(ValueError, match="over 63"):
        dnsprobe.query_packet("a" * 64 + ".svc", 1)


@pytest.mark.parametrize(
    ("packet", "problem"),
    [
        (reply(dnsprobe.query_packet("x", 7)), ""),
        (reply(dnsprobe.query_packet("x", 7), rcode=3, answers=0), "NXDOMAIN"),
        (reply(dnsprobe.query_packet("x", 7), rcode=2, answers=0), "SERVFAIL"),
        (reply(dnsprobe.query_packet("x", 7), answers=0), "no records"),
        (reply(dnsprobe.query_packet("x", 7), flip_id=True), "another query"),
        (b"\x00\x07", "short"),
        (dnsprobe.query_packet("x", 7), "not a DNS reply"),
    ],
)
def test_answer_problem(packet: bytes, problem: str) -> None:
    got = dnsprobe.answer_problem(packet, 7)
    assert (got == "") if not problem else (problem in got)


@pytest.fixture
def dns_server() -> Iterator[tuple[int, dict[str, int]]]:
    """A UDP server on 127.0.0.1: NXDOMAIN for names starting with "missing", silence for
    "silent", else one A record; a stale reply (wrong id) goes first, as a late answer would."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    seen = {"queries": 0}
    stop = threading.Event()

    def serve_udp() -> None:
        while not stop.is_set():
            try:
                query, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            seen["queries"] += 1
            if b"\x06silent" in query:
                continue
            sock.sendto(reply(query, flip_id=True), peer)
            if b"\x07missing" in query:
                sock.sendto(reply(query, rcode=3, answers=0), peer)
            else:
                sock.sendto(reply(query), peer)

    t = threading.Thread(target=serve_udp, daemon=True)
    t.start()
    try:
        yield sock.getsockname()[1], seen
    finally:
        stop.set()
        t.join(2)
        sock.close()


def test_probe_answers(dns_server: tuple[int, dict[str, int]]) -> None:
    port, seen = dns_server
    assert dnsprobe.probe("127.0.0.1", "kubernetes.default.svc.cluster.local", port=port) == ""
    assert seen["queries"] == 1


def test_probe_reports_nxdomain(dns_server: tuple[int, dict[str, int]]) -> None:
    port, _ = dns_server
    assert "NXDOMAIN" in dnsprobe.probe("127.0.0.1", "missing.svc", port=port)


def test_probe_times_out_on_silence(dns_server: tuple[int, dict[str, int]]) -> None:
    port, _ = dns_server
    got = dnsprobe.probe("127.0.0.1", "silent.svc", timeout=0.3, port=port)
    assert "no DNS answer" in got


def test_probe_of_a_closed_port_is_refused_at_once() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens: the kernel answers ICMP port unreachable
    got = dnsprobe.probe("127.0.0.1", "kubernetes.default.svc", timeout=5, port=port)
    assert "refused" in got.lower()


def test_health_server_serves_a_named_check_with_its_reason() -> None:
    answers = {"dns": "no DNS Service yet"}
    server = serve(
        "127.0.0.1:0",
        lambda: True,
        lambda: True,
        Metrics(WorkQueue()),
        {"dns": lambda: answers["dns"]},
    )
    port = server.server_address[1]
    try:
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz/dns", timeout=5)
        assert failed.value.code == 503
        assert failed.value.read().decode() == "no DNS Service yet"
        answers["dns"] = ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz/dns", timeout=5) as ok:
            assert ok.read() == b"ok"
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz/other", timeout=5)
        assert unknown.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
