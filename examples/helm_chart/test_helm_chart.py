"""Example: install, upgrade and uninstall a Helm chart in a throw-away virtual cluster.

``vcluster.helm(...)`` runs helm with KUBECONFIG pointing at the vcluster (helm comes from
PATH or the plugin's cache); ``vcluster.kubectl(...)`` does the same for kubectl.

Run: pytest examples/helm_chart -v
"""

from __future__ import annotations

import json
from pathlib import Path

from kubernetes import client

CHART = Path(__file__).parent / "demo"


def test_install_upgrade_uninstall(vcluster, image):
    vcluster.helm(
        "install",
        "demo",
        str(CHART),
        "--set",
        "replicas=2",
        "--set",
        f"image={image}",
    )
    # Not `--wait`: the syncer re-creates a new virtual Service with its host copy's ClusterIP,
    # and helm's wait may read it in that instant ("services demo not found").
    deployment = vcluster.wait_for("Deployment", "demo", "Available", api_version="apps/v1")
    assert deployment.status.readyReplicas == 2
    apps = client.AppsV1Api(vcluster.api_client)
    core = client.CoreV1Api(vcluster.api_client)
    assert core.read_namespaced_config_map("demo-config", "default").data == {"greeting": "hello"}

    vcluster.helm(
        "upgrade",
        "demo",
        str(CHART),
        "--reuse-values",
        "--set",
        "greeting=hi",
        "--wait",
        "--timeout=120s",
    )
    assert core.read_namespaced_config_map("demo-config", "default").data == {"greeting": "hi"}
    releases = json.loads(vcluster.helm("list", "-o", "json").stdout)
    assert [(r["name"], r["revision"], r["status"]) for r in releases] == [
        ("demo", "2", "deployed")
    ]

    # The workload really runs on the host, in the vcluster's namespace.
    host = client.CoreV1Api(vcluster.host_api_client())
    pods = core.list_namespaced_pod("default", label_selector="app.kubernetes.io/instance=demo")
    for pod in pods.items:
        twin = host.read_namespaced_pod(vcluster.host_name(pod), vcluster.host_namespace)
        assert twin.status.phase == "Running"

    vcluster.helm("uninstall", "demo", "--wait")
    assert apps.list_namespaced_deployment("default").items == []
