"""The fake nodes' kubelet API against real API servers (local host, kwok pods).

Host pods are simulated here, so logs/exec/port-forward end in one clear error from the
vcluster's API server — never a hang or a 500. The vcluster's RBAC is applied before the syncer
is called, and the syncer accepts no certificate but its API server's. Real streams: e2e on kind.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from pytest_vcluster.binaries import BinaryResolver
from pytest_vcluster.errors import VClusterError
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_vcluster import LocalVCluster
from pytest_vcluster.versions import parse_k8s_version
from syncer.kubelet.server import SIMULATED

MESSAGE = SIMULATED.format(namespace="default", pod="web")


@pytest.fixture(scope="module")
def vc(local_binaries: dict[str, Path]) -> Iterator[LocalVCluster]:
    with (
        LocalHost(parse_k8s_version(None), local_binaries) as host,
        LocalVCluster(host.info(), "kapi") as v,
    ):
        yield v


@pytest.fixture(scope="module")
def kubectl() -> Path:
    resolver = BinaryResolver(parse_k8s_version(None), allow_build=False, download_base="off")
    try:
        return resolver.resolve("kubectl").path
    except VClusterError as exc:
        pytest.fail(f"{exc}\nRun `pytest-vcluster binaries --build` first.", pytrace=False)


@pytest.fixture(scope="module")
def api(vc: LocalVCluster) -> client.ApiClient:
    return config.new_client_from_config(str(vc.kubeconfig_path))


@pytest.fixture(scope="module")
def running_pod(api: client.ApiClient) -> client.V1Pod:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
        },
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod("web", "default")
        if pod.status.phase == "Running" and pod.spec.node_name:
            return pod
        time.sleep(0.2)
    raise AssertionError(f"pod web not Running: {pod.status}")


def _kubelet_port(vc: LocalVCluster) -> int:
    assert vc.syncer is not None
    m = re.search(r"syncer: kubelet API on 127\.0\.0\.1:(\d+)", vc.syncer.log_tail(400))
    assert m, vc.syncer.log_tail(40)
    return int(m.group(1))


def _metric(vc: LocalVCluster, name: str) -> float:
    url = f"http://{vc.syncer_health}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_fake_node_advertises_the_syncers_kubelet(
    vc: LocalVCluster, api: client.ApiClient, running_pod: client.V1Pod
) -> None:
    core = client.CoreV1Api(api)
    # The kubelet API is the syncer's (Hostname, which the API server prefers); traffic "to the
    # node" goes to the host node, whose IP the host pod reports (copied back as status.hostIP).
    assert running_pod.status.host_ip
    wanted = [("InternalIP", running_pod.status.host_ip), ("Hostname", "127.0.0.1")]
    deadline = time.monotonic() + 10
    while True:
        node = core.read_node(running_pod.spec.node_name)
        shown = [(a.type, a.address) for a in node.status.addresses or []]
        if shown == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert shown == wanted
    assert node.status.daemon_endpoints.kubelet_endpoint.port == _kubelet_port(vc)
    assert node.status.node_info.kubelet_version.startswith("v1.")  # the host's
    # Schedulable as a Ready node is: no not-ready taint left from its creation.
    deadline = time.monotonic() + 10
    while node.spec.taints and time.monotonic() < deadline:
        time.sleep(0.2)
        node = core.read_node(running_pod.spec.node_name)
    assert not node.spec.taints


def test_logs_on_the_simulated_host_are_one_clear_error(
    vc: LocalVCluster, api: client.ApiClient, running_pod: client.V1Pod
) -> None:
    core = client.CoreV1Api(api)
    before = _metric(vc, 'syncer_kubelet_calls_total{verb="containerLogs"}')
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log("web", "default", _request_timeout=20)
    assert err.value.status == 400
    assert MESSAGE in err.value.body
    assert _metric(vc, 'syncer_kubelet_calls_total{verb="containerLogs"}') == before + 1


@pytest.mark.parametrize(
    "args",
    [
        ("exec", "web", "--", "true"),
        ("exec", "-i", "web", "--", "cat"),
        ("attach", "web"),
        ("port-forward", "pod/web", "0:80"),
        ("logs", "-f", "web"),
    ],
)
def test_kubectl_gets_the_clear_error_and_returns(
    vc: LocalVCluster, running_pod: client.V1Pod, kubectl: Path, args: tuple[str, ...]
) -> None:
    proc = subprocess.run(
        [str(kubectl), f"--kubeconfig={vc.kubeconfig_path}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "runs on the simulated local host" in proc.stderr, proc.stderr
    assert "goroutine" not in proc.stderr


def test_a_user_without_rights_gets_403_from_the_vcluster(
    vc: LocalVCluster, api: client.ApiClient, running_pod: client.V1Pod
) -> None:
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account("default", {"metadata": {"name": "viewer"}})
    rbac.create_namespaced_role(
        "default",
        {
            "metadata": {"name": "viewer"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": "default"}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "viewer", "default", {"spec": {"expirationSeconds": 600}}
    ).status.token
    cfg = client.Configuration()
    cfg.host = api.configuration.host
    cfg.ssl_ca_cert = api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    viewer = client.CoreV1Api(client.ApiClient(cfg))
    assert viewer.read_namespaced_pod("web", "default").metadata.name == "web"
    before = _metric(vc, "syncer_kubelet_calls_total")
    with pytest.raises(ApiException) as err:
        viewer.read_namespaced_pod_log("web", "default")
    assert err.value.status == 403
    assert "pods/log" in err.value.body
    assert _metric(vc, "syncer_kubelet_calls_total") == before  # the syncer was never asked


def test_the_syncer_accepts_only_its_api_servers_certificate(
    vc: LocalVCluster, running_pod: client.V1Pod
) -> None:
    """The vcluster admin's certificate comes from the same CA: still refused."""
    d = vc.workdir
    ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
    ctx.load_cert_chain(str(d / "admin.crt"), str(d / "admin.key"))
    raw = socket.create_connection(("127.0.0.1", _kubelet_port(vc)), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /containerLogs/default/web/c HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 403"), reply


def test_no_connection_is_left_open(vc: LocalVCluster, running_pod: client.V1Pod) -> None:
    deadline = time.monotonic() + 10
    while _metric(vc, "syncer_kubelet_open_connections") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _metric(vc, "syncer_kubelet_open_connections") == 0
