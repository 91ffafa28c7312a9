"""Example: one virtual cluster for the session, returned to its ready state before each test.

``vcluster_namespace`` isolates namespaced objects; ``vcluster_clean`` isolates everything —
cluster-scoped objects, CRDs, webhooks, RBAC, changes to the defaults — at the price of a
reset (tens of milliseconds) instead of a new vcluster (seconds).

Run: pytest examples/session_reset -v -p no:randomly
"""

from __future__ import annotations

from kubernetes import client

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Cluster",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            }
        ],
    },
}


def test_installs_cluster_wide_things(vcluster_clean, image):
    vc = vcluster_clean
    vc.apply(CRD)
    vc.wait_for(
        "CustomResourceDefinition",
        "gadgets.example.com",
        "Established",
        api_version="apiextensions.k8s.io/v1",
    )
    vc.apply({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}})
    core = client.CoreV1Api(vc.api_client)
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_pod(
        "team",
        {
            "metadata": {"name": "worker"},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}],
            },
        },
    )
    vc.wait_for("Pod", "worker", "Running", namespace="team", timeout=120)


def test_starts_from_the_ready_state(vcluster_clean):
    vc = vcluster_clean
    core = client.CoreV1Api(vc.api_client)
    assert "team" not in [n.metadata.name for n in core.list_namespace().items]
    crds = client.ApiextensionsV1Api(vc.api_client).list_custom_resource_definition().items
    assert "gadgets.example.com" not in [c.metadata.name for c in crds]
    # The name is free again, and so is the host: the pod's host copy went with the reset.
    core.create_namespace({"metadata": {"name": "team"}})
