"""The vcluster's kube-dns pinned to a host Service (syncer --dns-host-service, the chart's
coredns.embedded) against real API servers: the syncer process of a local vcluster gives the
virtual kube-dns the host Service's IP and Endpoints naming the CoreDNS pod, syncs none of it
down, puts back what a user deletes, and synced pods resolve through that IP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config
from syncer_helpers import bare_pod, wait_for

from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_vcluster import LocalVCluster

COREDNS = "10.244.7.9"  # the CoreDNS pod's address: nothing dials it here
HOST_SERVICE = "front-dns"


@pytest.fixture(scope="module")
def vc(host: LocalHost) -> Iterator[LocalVCluster]:
    args = (f"--dns-host-service={HOST_SERVICE}", f"--dns-endpoint={COREDNS}:1053")
    with LocalVCluster(host.info(), "pinned-dns", syncer_args=args) as v:
        yield v


@pytest.fixture(scope="module")
def front(vc: LocalVCluster, hcore: client.CoreV1Api) -> client.V1Service:
    """The chart's Service in front of CoreDNS (made after the syncer started: it waits)."""
    body = {
        "metadata": {"name": HOST_SERVICE},
        "spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 1053}]},
    }
    return hcore.create_namespaced_service(vc.host_namespace, body)


@pytest.fixture(scope="module")
def virtual(vc: LocalVCluster) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))


def _at(core: client.CoreV1Api, ip: str) -> client.V1Service | None:
    svc = core.read_namespaced_service("kube-dns", "kube-system")
    return svc if svc.spec.cluster_ip == ip else None


def test_kube_dns_takes_the_host_services_ip_and_names_the_pod(
    front: client.V1Service, virtual: client.CoreV1Api
) -> None:
    ip = front.spec.cluster_ip
    svc = wait_for(lambda: _at(virtual, ip), what="kube-dns at the host Service's IP")
    assert svc.metadata.labels["k8s-app"] == "kube-dns"
    assert not svc.spec.selector
    assert [(p.name, p.port, p.protocol) for p in svc.spec.ports] == [
        ("dns", 53, "UDP"),
        ("dns-tcp", 53, "TCP"),
    ]
    ep = wait_for(lambda: virtual.read_namespaced_endpoints("kube-dns", "kube-system"))
    assert [a.ip for a in ep.subsets[0].addresses] == [COREDNS]
    assert {(p.port, p.protocol) for p in ep.subsets[0].ports} == {(1053, "UDP"), (1053, "TCP")}


def test_nothing_of_it_is_synced_down_and_deleted_comes_back(
    front: client.V1Service, virtual: client.CoreV1Api, hcore: client.CoreV1Api, vc: LocalVCluster
) -> None:
    ip = front.spec.cluster_ip
    wait_for(lambda: _at(virtual, ip), what="kube-dns at the host Service's IP")
    virtual.delete_namespaced_service("kube-dns", "kube-system")
    virtual.delete_namespaced_endpoints("kube-dns", "kube-system")
    wait_for(lambda: _at(virtual, ip), timeout=40, what="kube-dns made again")
    wait_for(
        lambda: virtual.read_namespaced_endpoints("kube-dns", "kube-system").subsets,
        timeout=40,
        what="kube-dns Endpoints made again",
    )
    # A Service of the test's, synced after kube-dns was: the syncer is past both.
    virtual.create_namespaced_service(
        "default", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    )

    def synced() -> list[str] | None:
        names = _host_names(hcore, vc)
        return names if any(n.startswith("web-x-") for n in names) else None

    names = wait_for(synced, what="web synced to the host")
    assert not [n for n in names if n.startswith("kube-dns")], names
    slices = client.DiscoveryV1Api(hcore.api_client).list_namespaced_endpoint_slice(
        vc.host_namespace
    )
    assert not [s for s in slices.items if s.metadata.name.startswith("kube-dns")]


def _host_names(hcore: client.CoreV1Api, vc: LocalVCluster) -> list[str]:
    ns = vc.host_namespace
    services = [s.metadata.name for s in hcore.list_namespaced_service(ns).items]
    endpoints = [e.metadata.name for e in hcore.list_namespaced_endpoints(ns).items]
    return services + endpoints


def test_synced_pods_resolve_through_it(
    front: client.V1Service, virtual: client.CoreV1Api, hcore: client.CoreV1Api, vc: LocalVCluster
) -> None:
    ip = front.spec.cluster_ip
    wait_for(lambda: _at(virtual, ip), what="kube-dns at the host Service's IP")
    virtual.create_namespaced_pod("default", bare_pod("resolver"))

    def host_pod() -> client.V1Pod | None:
        pods = hcore.list_namespaced_pod(vc.host_namespace).items
        return next((p for p in pods if p.metadata.name.startswith("resolver-x-")), None)

    pod = wait_for(host_pod, what="the pod on the host")
    assert pod.spec.dns_policy == "None"
    assert pod.spec.dns_config.nameservers[0] == ip
    assert "default.svc.cluster.local" in pod.spec.dns_config.searches
