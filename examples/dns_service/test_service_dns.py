"""Example: a Deployment and a Service, reached by name from another pod through the
vcluster's own DNS (CoreDNS inside the virtual cluster, its pods running on the host).

Needs a host that runs containers: pytest examples/dns_service --vcluster-host=kind
"""

from __future__ import annotations

import pytest
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

    # The short name relies on the search domains the syncer writes into the host pod.
    script = "wget -qO- -T 5 http://web && wget -qO- -T 5 http://web.default.svc.cluster.local"
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
    vc.wait_for("Pod", "client", lambda p: p.status.phase in ("Succeeded", "Failed"), timeout=120)
    logs = vc.logs("client")
    assert vc.wait_for("Pod", "client", "Succeeded", timeout=5), logs
    assert logs.splitlines() == ["hello through DNS", "hello through DNS"]
