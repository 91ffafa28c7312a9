"""The vcluster's ``kubernetes`` Service against real API servers (syncer.resources.apiservice):
it takes the IP of the host Service in front of the vcluster, its Endpoints and EndpointSlice
name the API server's pod, and what a user deletes comes back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config
from syncer_helpers import wait_for

from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_vcluster import LocalVCluster
from syncer.core.controller import Engine
from syncer.kube import Kube
from syncer.resources.apiservice import ApiService
from syncer.settings import parse

POD_IP = "10.244.7.7"  # any pod address: nothing dials it here


@pytest.fixture(scope="module")
def owner(host: LocalHost, vc: LocalVCluster) -> client.V1Service:
    hcore = client.CoreV1Api(host.api_client())
    body = {
        "metadata": {"name": "front"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
    }
    return hcore.create_namespaced_service(vc.host_namespace, body)


@pytest.fixture(scope="module")
def engine(host: LocalHost, vc: LocalVCluster, owner: client.V1Service) -> Iterator[ApiService]:
    settings = parse(
        [
            "--name=sync",
            f"--host-namespace={vc.host_namespace}",
            f"--virtual-kubeconfig={vc.kubeconfig_path}",
            f"--host-kubeconfig={host.kubeconfig_path}",
            "--owner-service=front",
            # The API server's own port, as in the chart: whether the syncer or the API server
            # makes the Service first, its target port is the same.
            f"--api-endpoint={POD_IP}:{vc.control_plane.port}",  # type: ignore[union-attr]
            "--workers=2",
        ]
    )
    virtual = Kube.from_kubeconfig(settings.virtual_kubeconfig, name="virtual")
    host_kube = Kube.from_kubeconfig(settings.host_kubeconfig, name="host")
    eng = Engine(settings, virtual, host_kube)
    api = ApiService(settings.api_endpoint or ("", 0))
    api.recheck = 0.5
    eng.add(api)
    eng.resolve_owner(timeout=10)
    eng.start()
    try:
        yield api
    finally:
        eng.stop()


@pytest.fixture(scope="module")
def vcore(vc: LocalVCluster) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))


def test_kubernetes_service_takes_the_host_services_ip(
    engine: ApiService, owner: client.V1Service, vcore: client.CoreV1Api, vc: LocalVCluster
) -> None:
    ip = owner.spec.cluster_ip
    svc = wait_for(
        lambda: (
            (s := vcore.read_namespaced_service("kubernetes", "default")).spec.cluster_ip == ip
            and s
        ),
        what="kubernetes Service at the host Service's IP",
    )
    assert svc.metadata.labels == {"provider": "kubernetes", "component": "apiserver"}
    # The ports the API server gave it (its controller re-checks those), not the host's.
    port = vc.control_plane.port  # type: ignore[union-attr]
    assert [(p.name, p.port, p.target_port) for p in svc.spec.ports] == [("https", 443, port)]


def test_endpoints_and_slice_name_the_api_servers_pod_and_come_back(
    engine: ApiService, vcore: client.CoreV1Api, vc: LocalVCluster
) -> None:
    disc = client.DiscoveryV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))

    def endpoints() -> client.V1Endpoints | None:
        ep = vcore.read_namespaced_endpoints("kubernetes", "default")
        return ep if ep.subsets and ep.subsets[0].addresses[0].ip == POD_IP else None

    ep = wait_for(endpoints, what="kubernetes Endpoints")
    assert [p.port for p in ep.subsets[0].ports] == [vc.control_plane.port]  # type: ignore[union-attr]
    assert ep.metadata.labels["endpointslice.kubernetes.io/skip-mirror"] == "true"
    eps = wait_for(lambda: disc.read_namespaced_endpoint_slice("kubernetes", "default"))
    assert [e.addresses for e in eps.endpoints] == [[POD_IP]]
    assert eps.metadata.labels["kubernetes.io/service-name"] == "kubernetes"
    # A user who deletes or edits them gets them back.
    vcore.delete_namespaced_endpoints("kubernetes", "default")
    wait_for(endpoints, what="kubernetes Endpoints re-made")
    eps.endpoints[0].addresses = ["10.244.9.9"]
    disc.replace_namespaced_endpoint_slice("kubernetes", "default", eps)
    wait_for(
        lambda: (
            disc.read_namespaced_endpoint_slice("kubernetes", "default").endpoints[0].addresses
            == [POD_IP]
        ),
        what="EndpointSlice repaired",
    )


def test_pods_keep_the_dns_name_when_the_certificate_lacks_the_ip(engine: ApiService) -> None:
    """The local vcluster's certificate does not name the host Service's IP."""
    assert engine.pod_address() is None
