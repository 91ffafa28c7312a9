"""Whether the vcluster's node port answers (a refusal is an answer) and what the kubeconfig
names: the rest of the node-port path runs against kind (tests/e2e)."""

from __future__ import annotations

import errno
import socket

import pytest

from pytest_vcluster.hosts.incluster import nodeport
from pytest_vcluster.hosts.incluster.nodeport import NodePorts, reachable


def test_a_listener_and_a_refusal_are_reachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert reachable("127.0.0.1", port)
    # The port is closed now: the kernel refuses, as a node does before the API server listens.
    assert reachable("127.0.0.1", port)


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError("timed out"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        OSError(errno.ENETUNREACH, "Network is unreachable"),
    ],
)
def test_no_answer_is_unreachable(monkeypatch: pytest.MonkeyPatch, exc: OSError) -> None:
    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        raise exc

    monkeypatch.setattr(nodeport.socket, "create_connection", connect)
    assert not reachable("172.18.0.2", 31000)


def test_server_and_lifecycle() -> None:
    access = NodePorts("172.18.0.2", 31443)
    assert access.server == "https://172.18.0.2:31443"
    assert NodePorts("fc00:f853::2", 31443).server == "https://[fc00:f853::2]:31443"
    assert not access.active
    access.start(0.0)
    assert access.active  # the API is reachable through it (diagnostics read the vcluster)
    assert access.stats == {}  # no forwarder, no counters
    access.stop()
    assert not access.active
