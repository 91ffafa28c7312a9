"""Example: test an operator and its CRD against a real API server and controller-manager.

Run: pytest examples/operator -v
"""

from __future__ import annotations

import time

import pytest
from greeter import CRD, GROUP, PLURAL, VERSION, Operator
from kubernetes import client


@pytest.fixture
def operator(vcluster):
    vcluster.apply(CRD)
    vcluster.wait_for(
        "CustomResourceDefinition",
        CRD["metadata"]["name"],
        "Established",
        api_version="apiextensions.k8s.io/v1",
    )
    op = Operator(vcluster.api_client)
    op.start()
    yield op
    op.stop()
    assert not op.errors, op.errors


def greeting(name: str, message: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Greeting",
        "metadata": {"name": name},
        "spec": {"message": message},
    }


def test_greeting_gets_its_configmap_and_status(vcluster, operator):
    vcluster.apply(greeting("hello", "hi there"))
    vcluster.wait_for(
        "Greeting", "hello", lambda g: (g.status or {}).get("ready"), api_version=f"{GROUP}/v1"
    )
    core = client.CoreV1Api(vcluster.api_client)
    assert core.read_namespaced_config_map("greeting-hello", "default").data == {
        "message": "hi there"
    }

    vcluster.apply(greeting("hello", "changed"))
    vcluster.wait_for(
        "ConfigMap", "greeting-hello", lambda cm: cm.data["message"] == "changed", timeout=10
    )


def test_deleting_the_greeting_deletes_its_configmap(vcluster, operator):
    vcluster.apply(greeting("bye", "so long"))
    vcluster.wait_for("ConfigMap", "greeting-bye", lambda cm: True)
    client.CustomObjectsApi(vcluster.api_client).delete_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "bye"
    )
    core = client.CoreV1Api(vcluster.api_client)
    deadline = time.monotonic() + 30
    while core.list_namespaced_config_map(
        "default", field_selector="metadata.name=greeting-bye"
    ).items:
        assert time.monotonic() < deadline, "greeting-bye was not deleted"
        time.sleep(0.1)


def test_the_crd_schema_is_enforced(vcluster, operator):
    with pytest.raises(client.ApiException) as err:
        vcluster.apply(greeting("empty", ""))
    assert err.value.status == 422
