"""Network isolation between vclusters on kind, enforced (``isolation.networkPolicy.enabled``):
the node image runs kube-network-policies behind iptables NFQUEUE rules. Two isolated
vclusters (A, B) and an open one (C), each with a web server pod and a client pod; the
attacker is a workload of A (or of C). Every "blocked" is a connection that did not open
within 3 s; every "reached" is a real HTTP answer or TCP connect, so a broken network cannot
pass for isolation (the controls), and an agent that lets everything through fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from kubernetes import client

from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster

from .manifests import pod

pytestmark = pytest.mark.e2e

ISOLATED = {"isolation": {"networkPolicy": {"enabled": True}}}
SERVE = (
    'mkdir -p /tmp/www && echo "served by $HOSTNAME" > /tmp/www/index.html && '
    "exec httpd -f -p 8080 -h /tmp/www"
)


@pytest.fixture(scope="module")
def vcs(
    kind_host: KindHost, vcluster_images: dict[str, str], app_image: str
) -> Iterator[dict[str, VCluster]]:
    kind_host.load_images([app_image])
    with ExitStack() as stack:
        out: dict[str, VCluster] = {}
        for key, values in (("a", ISOLATED), ("b", ISOLATED), ("c", None)):
            vc = VCluster(
                kind_host.info(), f"net-{key}", images=vcluster_images, values=values, timeout=180
            )
            out[key] = stack.enter_context(vc)
            vc.apply([pod("server", app_image, SERVE), pod("client", app_image)])
        for vc in out.values():
            for name in ("server", "client"):
                vc.wait_for("Pod", name, "Ready", timeout=180)
        yield out


def _pod_ip(vc: VCluster, name: str) -> str:
    return str(client.CoreV1Api(vc.api_client).read_namespaced_pod(name, "default").status.pod_ip)


def _run(vc: VCluster, script: str) -> str:
    proc = vc.kubectl("exec", "client", "--", "sh", "-c", script)
    return str(proc.stdout)


def _http(src: VCluster, ip: str, port: int = 8080) -> str:
    """The answer of ``ip:port`` to a GET from ``src``'s client pod, or ``BLOCKED``."""
    get = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}"
    return _run(src, f"{get} || echo BLOCKED")


def _connects(src: VCluster, ip: str, port: int) -> bool:
    out = _run(src, f"nc -w 3 {ip} {port} </dev/null && echo OPEN || echo BLOCKED")
    assert out.strip().endswith(("OPEN", "BLOCKED")), out
    return out.strip().endswith("OPEN")


def _api_endpoints(kind_host: KindHost, vc: VCluster) -> dict[str, tuple[str, int]]:
    """Three ways to vcluster ``vc``'s API server: its pod, its Service, its node port."""
    ns = vc.host_namespace
    name = vc.name
    pods: Any = kind_host.kubectl_json(
        "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}"
    )
    cp = [p for p in pods["items"] if p["metadata"]["name"].startswith(name)]
    svc: Any = kind_host.kubectl_json("get", "service", name, "-n", ns)
    out = {
        "pod": (cp[0]["status"]["podIP"], 6443),
        "service": (svc["spec"]["clusterIP"], 443),
    }
    node_ports = [p["nodePort"] for p in svc["spec"]["ports"] if p.get("nodePort")]
    if node_ports:
        nodes: Any = kind_host.kubectl_json("get", "nodes")
        addrs = nodes["items"][0]["status"]["addresses"]
        node_ip = next(a["address"] for a in addrs if a["type"] == "InternalIP")
        out["node port"] = (node_ip, node_ports[0])
    return out


def test_the_agent_runs_on_every_node(kind_host: KindHost) -> None:
    ds: Any = kind_host.kubectl_json(
        "get", "daemonset", "kube-network-policies", "-n", "kube-system"
    )
    status = ds["status"]
    assert status["numberReady"] == status["desiredNumberScheduled"] >= 1, json.dumps(status)


def test_own_namespace_dns_and_api_still_work(vcs: dict[str, VCluster]) -> None:
    a = vcs["a"]
    assert "served by" in _http(a, _pod_ip(a, "server"))
    dns = _run(a, "nslookup kubernetes.default.svc.cluster.local || echo FAILED")
    assert "FAILED" not in dns, dns
    assert "Address" in dns, dns
    api = _run(a, 'nc -w 3 "$KUBERNETES_SERVICE_HOST" 443 </dev/null && echo OPEN || echo BLOCKED')
    assert api.strip().endswith("OPEN"), api


def test_an_isolated_vclusters_pod_reaches_no_other_vcluster(
    vcs: dict[str, VCluster], kind_host: KindHost
) -> None:
    a, b, c = vcs["a"], vcs["b"], vcs["c"]
    assert _http(a, _pod_ip(b, "server")).strip() == "BLOCKED"  # isolated B's pod
    assert _http(a, _pod_ip(c, "server")).strip() == "BLOCKED"  # open C's pod: A's egress
    for way, (ip, port) in _api_endpoints(kind_host, b).items():
        assert not _connects(a, ip, port), f"A reached B's API server by its {way} {ip}:{port}"


def test_an_open_vclusters_pod_reaches_an_isolated_api_but_not_its_pods(
    vcs: dict[str, VCluster], kind_host: KindHost
) -> None:
    """The controls: C (no policy) reaches its own pods and B's API server port, which stays
    open to the host cluster (its clients authenticate); B's pods take nothing from C."""
    b, c = vcs["b"], vcs["c"]
    assert "served by" in _http(c, _pod_ip(c, "server"))
    ip, port = _api_endpoints(kind_host, b)["pod"]
    assert _connects(c, ip, port)
    assert _http(c, _pod_ip(b, "server")).strip() == "BLOCKED"
