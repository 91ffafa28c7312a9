"""Example: a fresh virtual cluster per test.

Run: pytest examples/basics -v
"""

import pytest
from kubernetes import client

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: "{image}", command: [httpd, -f, -p, "80"], ports: [containerPort: 80]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""


def test_deployment_runs_in_its_own_cluster(vcluster, image):
    vcluster.apply(DEPLOYMENT.replace("{image}", image))
    vcluster.wait_for("Deployment", "web", "Available", api_version="apps/v1")
    core = client.CoreV1Api(vcluster.api_client)
    pods = core.list_namespaced_pod("default", label_selector="app=web").items
    assert len(pods) == 2
    assert all(p.status.phase == "Running" for p in pods)
    # The pods really live on the host, under translated names, in one namespace.
    host = client.CoreV1Api(vcluster.host_api_client())
    host_pods = {p.metadata.name for p in host.list_namespaced_pod(vcluster.host_namespace).items}
    assert {vcluster.host_name(p) for p in pods} <= host_pods
    # The service has the same ClusterIP inside and on the host.
    svc = core.read_namespaced_service("web", "default")
    host_svc = host.read_namespaced_service(vcluster.host_name(svc), vcluster.host_namespace)
    assert svc.spec.cluster_ip == host_svc.spec.cluster_ip


@pytest.mark.vcluster(name="isolated")
def test_clusters_do_not_see_each_other(vcluster, vcluster_factory):
    other = vcluster_factory()
    client.CoreV1Api(vcluster.api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name="only-here"))
    )
    names = {n.metadata.name for n in client.CoreV1Api(other.api_client).list_namespace().items}
    assert "only-here" not in names
    assert vcluster.name == "isolated"
