"""VCluster.reset() on the kind host: real containers, a Deployment's controller, CoreDNS.

pytest -m e2e tests/e2e/test_reset_e2e.py -s
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster

from .manifests import pod as _pod

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def vc(kind_host: KindHost, vcluster_images: dict[str, str], app_image: str) -> Iterator[VCluster]:
    kind_host.load_images([app_image])
    vc = VCluster(kind_host.info(), "reset", images=vcluster_images, timeout=180, progress=print)
    vc.create()
    try:
        vc.snapshot()
        yield vc
    finally:
        vc.delete()


def _host_objects(vc: VCluster) -> dict[str, set[str]]:
    core = client.CoreV1Api(config.new_client_from_config(vc.host.kubeconfig))
    ns, sel = vc.host_namespace, "vc.pytest-vcluster.io/managed-by=reset"
    return {
        "pods": {p.metadata.name for p in core.list_namespaced_pod(ns, label_selector=sel).items},
        "services": {
            s.metadata.name for s in core.list_namespaced_service(ns, label_selector=sel).items
        },
        "configmaps": {
            c.metadata.name for c in core.list_namespaced_config_map(ns, label_selector=sel).items
        },
        "secrets": {
            s.metadata.name for s in core.list_namespaced_secret(ns, label_selector=sel).items
        },
    }


def test_reset_on_kind(vc: VCluster, app_image: str) -> None:
    core = client.CoreV1Api(vc.api_client)
    before = _host_objects(vc)
    # The defaults: CoreDNS runs in the vcluster's pod, the virtual kube-dns is pinned to the
    # chart's host Service; nothing of them is a synced copy.
    assert before["pods"] == set(), before
    dns_ip = core.read_namespaced_service("kube-dns", "kube-system").spec.cluster_ip
    assert dns_ip == vc._impl.dns_ip
    # ...and the node its pod runs on is the vcluster's node, as the synced CoreDNS pod's was.
    host = client.CoreV1Api(config.new_client_from_config(vc.host.kubeconfig))
    own = host.read_namespaced_pod(vc._impl.pod_name, vc.host_namespace)
    nodes = core.list_node().items
    assert [n.metadata.name for n in nodes] == [own.spec.node_name]
    ips = [(a.type, a.address) for a in nodes[0].status.addresses]
    assert ("InternalIP", own.status.host_ip) in ips
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "t1"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": _pod("x", app_image)["spec"],
            },
        },
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "t1"},
        "data": {"a": "1"},
    }
    with_volume = _pod("reader", app_image)
    with_volume["metadata"]["namespace"] = "t1"
    with_volume["spec"]["volumes"] = [{"name": "s", "configMap": {"name": "settings"}}]
    vc.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t1"}},
            config_map,
            with_volume,
            deployment,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "t1"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
            },
        ]
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod("t1").items
        if len(pods) == 3 and all(p.status.phase == "Running" for p in pods):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"pods not running: {[(p.metadata.name, p.status.phase) for p in pods]}")
    made = _host_objects(vc)
    assert len(made["pods"] - before["pods"]) == 3
    assert made["configmaps"] - before["configmaps"]

    result = vc.reset()
    print("reset:", result)

    assert "t1" not in [n.metadata.name for n in core.list_namespace().items]
    after = _host_objects(vc)
    assert after == before  # the test's host copies are gone when reset() returns
    assert core.read_namespaced_service("kube-dns", "kube-system").spec.cluster_ip == dns_ip
    assert [n.metadata.name for n in core.list_node().items] == [own.spec.node_name]
    # The defaults work: a new pod of a used name runs and resolves a Service name.
    probe = _pod("reader", app_image, "nslookup kubernetes.default.svc.cluster.local && sleep 3600")
    core.create_namespaced_pod("default", probe)
    vc.wait_for("Pod", "reader", "Ready", timeout=120)
    time.sleep(1)
    assert "Address" in core.read_namespaced_pod_log("reader", "default")
