"""The in-cluster runtime's host side (hosts/incluster/hostapi.py, podwatch.py) against a real
API server — the local host's, whose pods kwok runs: what kubectl subprocesses did before."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vcluster.errors import HostStartError
from pytest_vcluster.hosts.incluster.hostapi import HostApi
from pytest_vcluster.hosts.incluster.podwatch import PodWatch
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.naming import host_namespace_body
from pytest_vcluster.servicecidr import cidrs_from_servicecidrs
from pytest_vcluster.versions import parse_k8s_version


@pytest.fixture(scope="module")
def host(local_binaries: dict[str, Path]) -> Iterator[LocalHost]:
    with LocalHost(parse_k8s_version(None), local_binaries, nodes=1) as h:
        yield h


@pytest.fixture
def api(host: LocalHost) -> Iterator[HostApi]:
    api = HostApi(str(host.kubeconfig_path))
    yield api
    api.close()


def _pod(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "x"}], "nodeName": "kwok-node-0"},
    }


def test_namespace_lifecycle(api: HostApi) -> None:
    body = host_namespace_body("hapi", {"pytest-vcluster.io/run-id": "r"}, "baseline")
    api.create_namespace(body, "hapi")
    ns = body["metadata"]["name"]
    got = api.core.read_namespace(ns)
    assert got.metadata.labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert got.metadata.labels["app.kubernetes.io/managed-by"] == "pytest-vcluster"
    with pytest.raises(HostStartError, match="host namespace vcluster-hapi exists already"):
        api.create_namespace(body, "hapi")
    api.core.create_namespaced_pod(ns, _pod("p"))
    assert api.pods_or_claims_left(ns) == (True, False)
    assert [p["metadata"]["name"] for p in api.pods(ns)] == ["p"]
    assert api.delete_namespace(ns)
    api.delete_pods_now(ns)
    deadline = time.monotonic() + 60
    while api.namespace_exists(ns):
        assert time.monotonic() < deadline, "namespace not removed"
        time.sleep(0.2)
    assert not api.delete_namespace(ns)  # gone already


def test_host_facts(api: HostApi) -> None:
    listing = api._json(
        __import__("kubernetes").client.NetworkingV1Api(api.client).list_service_cidr
    )
    assert api.service_cidr("default") == cidrs_from_servicecidrs(listing)[0]
    assert api.coredns_image() == ""  # the local host runs no CoreDNS: the chart's default
    assert api.service_ip("default", "kubernetes")
    assert api.service_ip("default", "nope") == ""
    assert not api.has_ready_endpoint("default", "nope")
    api.core.create_namespaced_secret(
        "default", {"metadata": {"name": "s"}, "data": {"config": "aGk="}}
    )
    assert api.secret_value("default", "s", "config") == b"hi"


def test_service_cidr_without_servicecidrs(api: HostApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ServiceCIDRs may not be listed: the 1.1.1.1 probe, whose refusal names no range
    since 1.33, then kubeadm's default; the probe leaves nothing behind."""
    from kubernetes import client

    monkeypatch.delattr(client.NetworkingV1Api, "list_service_cidr")
    assert api.service_cidr("default") == "10.96.0.0/12"
    names = [
        s["metadata"]["name"]
        for s in api._json(api.core.list_namespaced_service, "default")["items"]
    ]
    assert names == ["kubernetes"]


def test_the_pod_watch_follows_one_pod(api: HostApi) -> None:
    api.core.create_namespaced_pod("default", _pod("other"))
    watch = PodWatch(api, "default", "watched")
    try:
        time.sleep(0.5)
        assert watch.latest() is None  # another pod is not it
        api.core.create_namespaced_pod("default", _pod("watched"))
        deadline = time.monotonic() + 30
        while ((watch.latest() or {}).get("status") or {}).get("phase") != "Running":
            assert time.monotonic() < deadline, watch.latest()
            time.sleep(0.05)
        # The readiness probes' path: a pod without a server behind it (kwok's; this API server
        # even refuses to proxy to its address) is an error status, not an exception.
        status, body = api.proxy_get("default", "https:watched:6443", "readyz")
        assert status >= 400, body
        assert isinstance(body, str)
        api.core.delete_namespaced_pod("watched", "default", grace_period_seconds=0)
        deadline = time.monotonic() + 30
        while watch.latest() is not None:
            assert time.monotonic() < deadline, "the deletion was not seen"
            time.sleep(0.05)
    finally:
        t0 = time.monotonic()
        watch.stop()
        assert time.monotonic() - t0 < 2  # stop() unblocks the open watch
        assert not watch._thread.is_alive()
