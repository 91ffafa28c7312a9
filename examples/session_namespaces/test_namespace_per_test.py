"""Example: one virtual cluster for the whole session, a fresh namespace for every test.

Creating a vcluster takes seconds; a namespace takes milliseconds. When tests only touch
namespaced objects, share ``vcluster_session`` and isolate with ``vcluster_namespace``.

Run: pytest examples/session_namespaces -v   (with -n 2 each worker gets its own vcluster)
"""

from __future__ import annotations

import pytest
from kubernetes import client
from workloads import web_container


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_each_test_gets_its_own_namespace(vcluster_session, vcluster_namespace, replicas, image):
    vcluster_session.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},  # same name in every test: no clash
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [web_container(image)]},
                },
            },
        },
        namespace=vcluster_namespace,
    )
    deployment = vcluster_session.wait_for(
        "Deployment",
        "web",
        "Available",
        namespace=vcluster_namespace,
        api_version="apps/v1",
    )
    assert deployment.status.readyReplicas == replicas
    apps = client.AppsV1Api(vcluster_session.api_client)
    # Only this test's objects are in its namespace.
    assert [d.metadata.name for d in apps.list_namespaced_deployment(vcluster_namespace).items] == [
        "web"
    ]


def test_namespaces_of_earlier_tests_are_gone_or_going(vcluster_session, vcluster_namespace):
    core = client.CoreV1Api(vcluster_session.api_client)
    live = [
        ns.metadata.name
        for ns in core.list_namespace().items
        if ns.status.phase == "Active" and ns.metadata.name.startswith("test-each-test")
    ]
    assert live == []
