"""Example: a Deployment and a Service, reached by name from another pod through the
vcluster's own DNS (CoreDNS in the vcluster's pod on the host, at kube-system/kube-dns).

Needs a host that runs containers: pytest examples/dns_service --vcluster-host=kind
"""

from __future__ import annotations

import pytest
from kubernetes import client
from workloads import web_container


@pytest.fixture
def real_pods(vcluster):
    if vcluster.host.kind == "local":
        pytest.skip("the local host simulates pods (kwok): use --vcluster-host=kind or kubeconfig")
    return vcluster


def test_service_is_reached_by_its_dns_name(real_pods, image):
    vc = real_pods
    vc.apply(
        [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [web_container(image, "hello through DNS")]},
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        ]
    )
    vc.wait_for("Deployment", "web", "Available", api_version="apps/v1", timeout=120)
    # No wait for the DNS: a vcluster is ready only once its DNS answers from the pod network.

    # Resolve the short name (search domains written by the syncer into the host pod) with
    # busybox's own resolver, then fetch the page from the address it returned. As on any
    # cluster, brand-new Services route once kube-proxy has programmed them: retry a little.
    script = """
    for i in $(seq 20); do
        addr=$(nslookup web | awk '/^Name:/ {n=1} n && /^Address/ {print $2; exit}')
        if [ -n "$addr" ] && page=$(timeout 5 wget -qO- "http://$addr"); then
            echo "$addr"; echo "$page"; exit 0
        fi
        sleep 1
    done
    exit 1
    """
    vc.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "client",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", script],
                    }
                ],
            },
        }
    )
    done = vc.wait_for(
        "Pod", "client", lambda p: p.status.phase in ("Succeeded", "Failed"), timeout=120
    )
    logs = vc.logs("client")
    assert done.status.phase == "Succeeded", logs
    service = client.CoreV1Api(vc.api_client).read_namespaced_service("web", "default")
    assert logs.splitlines() == [service.spec.cluster_ip, "hello through DNS"]
