"""The syncer's own HTTP/1.1 client, its work queue priorities and its status and node
bookkeeping: things the integration tests exercise only on the happy path."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from syncer.core.workqueue import CREATE, FOLLOW_UP, WorkQueue
from syncer.kube import ApiError, Kube
from syncer.resources.generic import status_differs
from syncer.resources.nodes import (
    DECLARED_FEATURES,
    Nodes,
    advertised,
    fake_node_status,
    shown,
)
from syncer.translate.metadata import json_copy

Handler = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def server() -> Iterator[tuple[str, list[Handler], list[tuple[str, str, bytes]]]]:
    """A keep-alive HTTP/1.1 server; tests push per-request handlers, requests are logged."""
    handlers: list[Handler] = []
    seen: list[tuple[str, str, bytes]] = []

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            seen.append((self.command, self.path, self.rfile.read(n)))
            handlers.pop(0)(self)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handlers, seen
    srv.shutdown()
    srv.server_close()


def reply(status: int, body: Any, *, close: bool = False, drop: bool = False) -> Handler:
    """``close``: say Connection: close; ``drop``: close after the reply without saying so."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        if close:
            h.send_header("Connection", "close")
        h.close_connection = close or drop
        h.end_headers()
        h.wfile.write(data)

    return handle


def chunked(*pieces: bytes) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for piece in pieces:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        h.wfile.write(b"0\r\n\r\n")

    return handle


def test_requests_reuse_one_connection_and_encode_bodies(server: Any) -> None:
    url, handlers, seen = server
    kube = Kube(url)
    handlers += [reply(201, {"a": 1}), reply(200, {"b": 2}), reply(200, {"c": 3})]
    assert kube.create("/api/v1/x", {"k": "v"}) == {"a": 1}
    assert kube.get("/api/v1/x", limit=1) == {"b": 2}
    assert kube.merge_patch("/api/v1/x/status", {"s": 1}) == {"c": 3}
    assert [(m, p) for m, p, _ in seen] == [
        ("POST", "/api/v1/x"),
        ("GET", "/api/v1/x?limit=1"),
        ("PATCH", "/api/v1/x/status"),
    ]
    assert json.loads(seen[0][2]) == {"k": "v"}
    assert len(kube._idle) == 1  # one keep-alive connection served all three
    assert kube.requests == 3


def test_errors_carry_status_and_body(server: Any) -> None:
    url, handlers, _ = server
    kube = Kube(url)
    handlers += [reply(409, {"reason": "AlreadyExists", "message": "exists"})]
    with pytest.raises(ApiError) as err:
        kube.create("/api/v1/x", {})
    assert err.value.status == 409
    assert err.value.reason == "AlreadyExists"
    handlers += [reply(404, {"reason": "NotFound"})]
    assert kube.delete("/api/v1/x") is None  # 404 on delete is success


def test_connection_close_and_a_dead_idle_connection_are_handled(server: Any) -> None:
    url, handlers, seen = server
    kube = Kube(url)
    handlers += [reply(200, {"n": 1}, close=True), reply(200, {"n": 2})]
    assert kube.get("/a") == {"n": 1}
    assert not kube._idle  # the server said close: not kept
    assert kube.get("/b") == {"n": 2}
    # An idle connection the server dropped: the request goes out again on a new one.
    handlers += [reply(200, {"n": 3}, drop=True), reply(200, {"n": 4})]
    assert kube.get("/c") == {"n": 3}
    time.sleep(0.1)
    assert kube.create("/d", {}) == {"n": 4}
    # One of ours shut down: the same.
    kube._idle[0].sock.shutdown(socket.SHUT_RDWR)
    handlers += [reply(200, {"n": 5})]
    assert kube.get("/e") == {"n": 5}
    assert [p for _, p, _ in seen] == ["/a", "/b", "/c", "/d", "/e"]


def test_chunked_bodies_and_watch_streams(server: Any) -> None:
    url, handlers, _ = server
    kube = Kube(url)
    handlers += [chunked(b'{"items":', b"[]}")]
    assert kube.get("/list") == {"items": []}
    events = [{"type": "ADDED", "object": {"n": i}} for i in range(3)]
    lines = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    # Events split across chunks and several in one chunk.
    handlers += [chunked(lines[:5], lines[5:40], lines[40:])]
    assert list(kube.watch("/w", "1", timeout_seconds=5, params={})) == events
    handlers += [reply(410, {"code": 410, "reason": "Expired"})]
    with pytest.raises(ApiError) as err:
        list(kube.watch("/w", "1", timeout_seconds=5, params={}))
    assert err.value.status == 410


def too_many(retry_after: str | None) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        data = b'{"reason": "TooManyRequests"}'
        h.send_response(429)
        if retry_after is not None:
            h.send_header("Retry-After", retry_after)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return handle


def test_429_is_sent_again_after_retry_after(server: Any) -> None:
    url, handlers, seen = server
    kube = Kube(url)
    handlers += [too_many("1"), reply(201, {"ok": True})]
    t0 = time.monotonic()
    assert kube.create("/api/v1/x", {"k": "v"}) == {"ok": True}
    assert time.monotonic() - t0 >= 0.95  # waited as asked
    assert [m for m, _, _ in seen] == ["POST", "POST"]
    # Without Retry-After the caller decides (its work queue backs off): one request, an error.
    handlers += [too_many(None)]
    with pytest.raises(ApiError) as err:
        kube.get("/api/v1/x")
    assert (err.value.status, err.value.retry_after) == (429, None)
    # It asks again only max_retries (3) times; the error says how long the server wants.
    handlers += [too_many("0")] * 4
    with pytest.raises(ApiError) as err:
        kube.get("/api/v1/y")
    assert (err.value.status, err.value.retry_after) == (429, 0.0)
    assert len(seen) == 7


def test_a_rotated_token_file_is_read_again(server: Any, tmp_path: Any) -> None:
    url, handlers, _ = server
    token = tmp_path / "token"
    token.write_text("first\n")
    seen: list[str] = []

    def auth(*valid: str) -> Handler:
        def handle(h: BaseHTTPRequestHandler) -> None:
            seen.append(h.headers.get("Authorization", ""))
            ok = seen[-1] in [f"Bearer {v}" for v in valid]
            reply(200 if ok else 401, {"ok": ok})(h)

        return handle

    kube = Kube(url, token_file=str(token), token_refresh=3600)
    handlers += [auth("first")]
    assert kube.get("/a") == {"ok": True}
    # The kubelet rotated the projected token and the old one expired: a 401, then the new
    # token is read and the request sent again with it.
    token.write_text("second\n")
    handlers += [auth("second"), auth("second")]
    assert kube.get("/b") == {"ok": True}
    assert seen == ["Bearer first", "Bearer first", "Bearer second"]
    # Read again on its own after token_refresh seconds, before any 401.
    kube = Kube(url, token_file=str(token), token_refresh=0)
    token.write_text("third\n")
    handlers += [auth("third")]
    assert kube.get("/c") == {"ok": True}
    assert seen[-1] == "Bearer third"
    assert kube.endpoint()[3] == [("Host", url.split("//")[1]), ("Authorization", "Bearer third")]
    # A 401 that a re-read does not change is the caller's error.
    handlers += [auth("fourth")]
    with pytest.raises(ApiError) as err:
        kube.get("/d")
    assert err.value.status == 401


def test_urgent_keys_are_served_first_and_never_twice() -> None:
    q = WorkQueue()
    q.add("update-1")
    q.add("update-2")
    q.add("new", urgent=True)
    q.add("update-1", urgent=True)  # already queued: stays where it is, once
    got = [q.get(0.1), q.get(0.1), q.get(0.1), q.get(0.01)]
    assert [g[0] if g else None for g in got] == ["new", "update-1", "update-2", None]
    # Added again while being processed: after done() it keeps its urgency.
    q.add("later")
    q.add("update-2", urgent=True)
    q.done("update-2")
    nxt = q.get(0.1)
    assert nxt is not None
    assert nxt[0] == "update-2"


def test_priorities_creates_then_follow_ups_then_updates() -> None:
    q = WorkQueue()
    q.add("update")
    q.add("token", priority=FOLLOW_UP)
    q.add("create", priority=CREATE)
    got = [q.get(0.1) for _ in range(3)]
    assert [g[0] if g else None for g in got] == ["create", "token", "update"]
    # Re-added while processing with a higher priority: served at that priority after done().
    q.add("a")
    q.add("update", priority=FOLLOW_UP)
    q.done("update")
    nxt = q.get(0.1)
    assert nxt is not None
    assert nxt[0] == "update"


def test_update_limit_caps_concurrent_updates_but_not_creates() -> None:
    q = WorkQueue(update_limit=2)
    for k in ("u1", "u2", "u3"):
        q.add(k)
    first = [q.get(0.1), q.get(0.1)]
    assert [g[0] if g else None for g in first] == ["u1", "u2"]
    assert q.get(0.05) is None  # two updates in progress: the third waits
    q.add("new", urgent=True)
    nxt = q.get(0.1)  # a creation still gets a worker
    assert nxt is not None
    assert nxt[0] == "new"
    q.done("new")
    assert q.get(0.05) is None
    # A finished update frees its slot for a worker already waiting.
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(q.get(2)))
    t.start()
    time.sleep(0.05)
    q.done("u1")
    t.join(2)
    assert got
    assert got[0] is not None
    assert got[0][0] == "u3"


def test_status_differs_only_on_host_keys() -> None:
    host = {"phase": "Running", "podIP": "10.0.0.1"}
    assert not status_differs(host, {**host, "extra": "kept by merge patch"})
    assert status_differs(host, {"phase": "Pending"})
    assert status_differs(host, None)
    assert not status_differs({}, {"phase": "Pending"})
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t1"}
    host = {"phase": "Pending", "conditions": [scheduled]}
    # Only the instant differs (binding set it on the virtual side): no patch.
    earlier = {**scheduled, "lastTransitionTime": "t0"}
    assert not status_differs(host, {**host, "conditions": [earlier]})
    assert status_differs(host, {**host, "conditions": [{**scheduled, "status": "False"}]})


def test_json_copy_is_deep() -> None:
    obj = {"a": [{"b": 1}], "c": "x"}
    copied = json_copy(obj)
    copied["a"][0]["b"] = 2
    assert obj == {"a": [{"b": 1}], "c": "x"}


class _Engine:
    def __init__(self) -> None:
        self.queued: list[tuple[str, str, str]] = []

    def enqueue(self, resource: str, namespace: str, name: str) -> None:
        self.queued.append((resource, namespace, name))


def test_nodes_count_pods_without_scanning() -> None:
    nodes, engine = Nodes(), _Engine()
    nodes.engine = engine  # type: ignore[assignment]

    def pod(name: str, node: str | None) -> dict[str, Any]:
        return {"metadata": {"namespace": "h", "name": name}, "spec": {"nodeName": node}}

    nodes._on_host_pod("ADDED", pod("a", None))
    assert engine.queued == []
    nodes._on_host_pod("MODIFIED", pod("a", "n1"))
    nodes._on_host_pod("ADDED", pod("b", "n1"))
    nodes._on_host_pod("MODIFIED", pod("b", "n1"))  # no change: nothing queued
    assert nodes.pods_on("n1") == 2
    assert engine.queued == [("nodes", "", "n1")]  # only the first pod changes its fate
    nodes._on_host_pod("DELETED", pod("a", "n1"))
    nodes._on_host_pod("DELETED", pod("b", "n1"))
    assert nodes.pods_on("n1") == 0
    assert engine.queued[-1] == ("nodes", "", "n1")


def test_nodes_learn_the_host_nodes_ip_from_its_pods() -> None:
    nodes, engine = Nodes(kubelet=("127.0.0.1", 10250), version="v1.37.2"), _Engine()
    nodes.engine = engine  # type: ignore[assignment]

    def pod(name: str, ip: str) -> dict[str, Any]:
        meta = {"namespace": "h", "name": name}
        return {"metadata": meta, "spec": {"nodeName": "n1"}, "status": {"hostIP": ip}}

    nodes._on_host_pod("ADDED", pod("a", ""))
    nodes._on_host_pod("ADDED", pod("b", ""))
    assert nodes.node_ip("n1") == ""
    assert engine.queued == [("nodes", "", "n1")]
    nodes._on_host_pod("MODIFIED", pod("b", "172.18.0.2"))  # not the node's first pod, but news
    assert nodes.node_ip("n1") == "172.18.0.2"
    assert engine.queued == [("nodes", "", "n1")] * 2
    nodes._on_host_pod("MODIFIED", pod("a", "172.18.0.2"))  # known already: nothing queued
    assert len(engine.queued) == 2


def test_own_node_is_shown_from_the_start_and_stays() -> None:
    """The node this pod runs on (CoreDNS in it) is a node of the vcluster with no synced pod
    on it, with its IP as given; its synced pods come and go without removing it."""
    nodes, engine = Nodes(own=("n0", "172.18.0.2")), _Engine()
    nodes.engine = engine  # type: ignore[assignment]
    assert nodes.pods_on("n0") == 1
    assert nodes.node_ip("n0") == "172.18.0.2"

    def pod(name: str, kind: str = "ADDED") -> None:
        meta = {"namespace": "h", "name": name}
        body = {"metadata": meta, "spec": {"nodeName": "n0"}, "status": {"hostIP": "10.9.9.9"}}
        nodes._on_host_pod(kind, body)

    pod("a")
    pod("a", "DELETED")
    assert nodes.pods_on("n0") == 1
    assert nodes.node_ip("n0") == "172.18.0.2"  # given, not what a pod reports
    assert Nodes(own=("", "")).pods_on("") == 0  # not in a pod (the local runtime): none


def test_fake_node_status_keeps_traffic_and_kubelet_addresses_apart() -> None:
    status = fake_node_status(("127.0.0.1", 4321), "v1.37.2", node_ip="172.18.0.2")
    node = {"status": status}
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "172.18.0.2"},
        {"type": "Hostname", "address": "127.0.0.1"},
    ]
    assert advertised(node) == ("127.0.0.1", 4321)
    assert shown(node) == (("127.0.0.1", 4321), "v1.37.2", DECLARED_FEATURES, "172.18.0.2")
    # Before any pod reported its node's IP: only the kubelet endpoint.
    assert fake_node_status(("127.0.0.1", 1), node_ip="")["addresses"] == [
        {"type": "Hostname", "address": "127.0.0.1"}
    ]
    assert advertised({"status": fake_node_status(None, node_ip="10.0.0.1")}) is None
