"""Example: talk to the embedded local host with the `kubernetes` client.

Run: pytest examples/local_host -v
"""

import time

import pytest
from kubernetes import client


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_deployment_gets_running_pods(host_client, vcluster_settings, image):
    if vcluster_settings.host != "local":
        pytest.skip("this example is about the embedded local host (fake kwok nodes)")
    apps = client.AppsV1Api(host_client)
    core = client.CoreV1Api(host_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="example")))
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        "example",
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=3,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[
                            client.V1Container(name="web", image=image, command=["httpd", "-f"])
                        ]
                    ),
                ),
            ),
        ),
    )

    def all_running():
        pods = core.list_namespaced_pod("example", label_selector="app=web").items
        return len(pods) == 3 and all(p.status.phase == "Running" for p in pods)

    assert _wait(all_running), core.list_namespaced_pod("example").items
    pods = core.list_namespaced_pod("example", label_selector="app=web").items
    assert all(p.spec.node_name.startswith("kwok-node-") for p in pods)
    assert all(p.status.pod_ip for p in pods)


def test_host_kubeconfig_works_for_kubectl_style_tools(host_kubeconfig_path):
    import yaml

    cfg = yaml.safe_load(host_kubeconfig_path.read_text())
    assert cfg["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
