"""A syncer port taken between ``free_port()`` and the syncer's bind (four vclusters starting at
once: once in 1,000 soak cycles) costs a restart on new ports, not the vcluster."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pytest_vcluster.hosts import local_vcluster
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_vcluster import LocalVCluster
from pytest_vcluster.procs import free_port


@pytest.fixture
def taken() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_taken_health_port_means_new_ports(
    host: LocalHost, taken: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([taken])  # the first port the syncer is given is someone else's by then
    monkeypatch.setattr(local_vcluster, "free_port", lambda: next(ports, None) or free_port())
    said: list[str] = []
    with LocalVCluster(host.info(), "port-race", progress=said.append) as vc:
        assert vc.syncer_health
        assert not vc.syncer_health.endswith(f":{taken}")
    assert any("syncer port taken, new ports" in line for line in said)
