"""Which addresses of selector-less Endpoints/EndpointSlices reach the host (the vcluster's pods,
allowed CIDRs), and the re-sync when a pod gets an address (syncer.resources.addresses)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from syncer.resources.addresses import AddressPolicy
from syncer.translate.endpoint_policy import (
    allowed_by,
    filter_endpoints,
    filter_slice,
    parse_cidrs,
)

POD = "10.244.0.9"
allowed = allowed_by({POD}, parse_cidrs(["192.0.2.0/24"]))


@pytest.mark.parametrize(
    ("address", "ok"),
    [(POD, True), ("192.0.2.77", True), ("10.96.0.1", False), ("172.18.0.2", False),
     ("example.com", False), ("", False)],
)  # fmt: skip
def test_addresses(address: str, ok: bool) -> None:
    assert allowed(address) is ok


def test_bad_cidr_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not a CIDR"):
        parse_cidrs(["10.0.0.0/33"])


def test_endpoints_keep_only_allowed_addresses() -> None:
    ep = {
        "subsets": [
            {"addresses": [{"ip": POD}, {"ip": "10.96.0.1"}], "ports": [{"port": 80}]},
            {"notReadyAddresses": [{"ip": "172.18.0.2"}], "ports": [{"port": 81}]},
        ]
    }
    out, refused = filter_endpoints(ep, allowed)
    assert out["subsets"] == [{"addresses": [{"ip": POD}], "ports": [{"port": 80}]}]
    assert refused == ["10.96.0.1", "172.18.0.2"]
    assert len(ep["subsets"]) == 2  # the virtual object is not touched


def test_slices_keep_only_allowed_addresses() -> None:
    eps = {"endpoints": [{"addresses": [POD, "10.96.0.1"]}, {"addresses": ["10.96.0.1"]}]}
    out, refused = filter_slice(eps, allowed)
    assert out["endpoints"] == [{"addresses": [POD]}]
    assert refused == ["10.96.0.1", "10.96.0.1"]


class FakePods:
    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.synced = threading.Event()
        self.synced.set()
        self.handlers: list[Any] = []

    def items(self) -> list[dict[str, Any]]:
        return self.pods

    def add_handler(self, handler: Any) -> None:
        self.handlers.append(handler)


class FakeEngine:
    def __init__(self, pods: FakePods) -> None:
        self.host_informers = {"pods": pods}
        self.recorder = None
        self.queued: list[tuple[str, str, str]] = []

    def enqueue(self, *key: str) -> None:
        self.queued.append(key)  # type: ignore[arg-type]


def test_an_object_with_refused_addresses_is_synced_again_when_a_pod_gets_one() -> None:
    pods = FakePods([{"status": {"podIP": POD}}])
    engine = FakeEngine(pods)
    policy = AddressPolicy()
    policy.setup(engine)  # type: ignore[arg-type]
    translate = policy.endpoints(lambda obj, ns, vc: dict(obj))
    obj = {"metadata": {"namespace": "a", "name": "e"},
           "subsets": [{"addresses": [{"ip": POD}, {"ip": "10.244.0.10"}]}]}  # fmt: skip
    out = translate(obj, "host", "vc")
    assert [a["ip"] for a in out["subsets"][0]["addresses"]] == [POD]
    (handler,) = pods.handlers
    handler("MODIFIED", {"status": {}})  # no address yet: nothing to do
    assert engine.queued == []
    pods.pods.append({"status": {"podIP": "10.244.0.10"}})
    handler("MODIFIED", {"status": {"podIP": "10.244.0.10"}})
    assert engine.queued == [("endpoints", "a", "e")]
    out = translate(obj, "host", "vc")  # the re-sync: now both are pods of the vcluster
    assert len(out["subsets"][0]["addresses"]) == 2
    engine.queued.clear()
    handler("MODIFIED", {"status": {"podIP": "10.244.0.11"}})
    assert engine.queued == []  # nothing refused any more
