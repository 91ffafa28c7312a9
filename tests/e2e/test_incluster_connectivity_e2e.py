"""vclusters on the kind host, reached: a pod to its API server, Service DNS, the node port and
the port-forward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster

pytestmark = pytest.mark.e2e

# Named to sort before test_incluster_e2e.py: its test_zz_nothing_left_on_the_host, which runs
# after this module, checks that these tests leave nothing on the host either.

IN_CLUSTER_CLIENT = """
import json, os, socket, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
env = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
print("ENV", *env)
print("DNS", socket.gethostbyname("kubernetes.default.svc"))
for server in ("%s:%s" % env, "kubernetes.default.svc"):
    url = "https://%s/apis/authentication.k8s.io/v1/selfsubjectreviews" % server
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    headers = {"Authorization": "Bearer " + open(sa + "/token").read(),
               "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
    review = json.load(urllib.request.urlopen(req, context=ctx))
    print("USER", server, review["status"]["userInfo"]["username"])
# OIDC discovery as a workload does it: the keys' URI must be one its CA and name check accept.
get = lambda url: urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=ctx)
discovery = json.load(get("https://kubernetes.default.svc/.well-known/openid-configuration"))
keys = json.load(get(discovery["jwks_uri"]))
print("JWKS", discovery["jwks_uri"], len(keys["keys"]))
"""


def test_pod_reaches_the_vcluster_api_in_cluster(
    kind_host: KindHost, vcluster_images: dict[str, str]
) -> None:
    """A synced pod talks to *its* API server, by the variables and by
    ``kubernetes.default.svc``: the vcluster's ``kubernetes`` Service has the IP of the
    release's host Service (the first IP of the range is the host's API server), and its
    Endpoints and EndpointSlice name the vcluster's pod, as a real cluster's name its servers."""
    from kubernetes import client

    with VCluster(kind_host.info(), "e2e-client", images=vcluster_images, timeout=180) as vc:
        host_svc = kind_host.kubectl_json("get", "service", "e2e-client", "-n", vc.host_namespace)
        ip = host_svc["spec"]["clusterIP"]
        core = client.CoreV1Api(vc.api_client)
        vc.wait_for(
            "Service", "kubernetes", lambda s: s.spec.clusterIP == ip, namespace="default",
            timeout=30,
        )  # fmt: skip
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": "default"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "client",
                        "image": vcluster_images["syncer"],  # has python3; loaded in the node
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python3", "-c", IN_CLUSTER_CLIENT],
                    }
                ],
            },
        }
        vc.apply(pod)
        done = vc.wait_for(
            "Pod", "client", lambda p: p.status.phase in ("Succeeded", "Failed"), timeout=90
        )
        logs = vc.logs("client")
        assert done.status.phase == "Succeeded", logs
        assert f"ENV {ip} 443" in logs
        assert f"DNS {ip}" in logs
        for server in (f"{ip}:443", "kubernetes.default.svc"):
            assert f"USER {server} system:serviceaccount:default:default" in logs
        assert "JWKS https://kubernetes.default.svc.cluster.local/openid/v1/jwks 1" in logs
        (vpod,) = kind_host.kubectl_json(
            "get", "pods", "-n", vc.host_namespace, "-l", "app.kubernetes.io/name=vcluster"
        )["items"]
        ep = core.read_namespaced_endpoints("kubernetes", "default")
        assert [a.ip for a in ep.subsets[0].addresses] == [vpod["status"]["podIP"]]
        assert [p.port for p in ep.subsets[0].ports] == [6443]
        eps = client.DiscoveryV1Api(vc.api_client).read_namespaced_endpoint_slice(
            "kubernetes", "default"
        )
        assert [e.addresses for e in eps.endpoints] == [[vpod["status"]["podIP"]]]
        assert [p.port for p in eps.ports] == [6443]


DNS_CLIENT = """
import socket, sys, time, urllib.request
for attempt in range(60):
    try:
        for url in ("http://web.default", "http://web.default.svc.cluster.local:80"):
            body = urllib.request.urlopen(url, timeout=3).read().decode()
            print("GOT", url, socket.gethostbyname(url.split("//")[1].split(":")[0]), body.strip())
        break
    except OSError as exc:
        print("retry", exc, flush=True)
        time.sleep(1)
else:
    sys.exit(1)
"""


def _python_pod(
    name: str, namespace: str, image: str, code: str, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": image,  # has python3; loaded in the node
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", code],
                }
            ],
        },
    }


@pytest.mark.parametrize("embedded", [True, False], ids=["coredns-in-pod", "coredns-pod"])
def test_service_reached_by_name_from_another_pod(
    kind_host: KindHost, vcluster_images: dict[str, str], embedded: bool
) -> None:
    """A pod in another virtual namespace reaches a Service by its name, with CoreDNS in the
    vcluster's own pod (the default: the host Service <release>-dns routes to it) or created by
    the syncer and synced like any pod (``coredns.embedded=false``)."""
    values = {"coredns": {"embedded": embedded}}
    name = "e2e-dns" if embedded else "e2e-dns-pod"
    with VCluster(kind_host.info(), name, images=vcluster_images, timeout=180, values=values) as vc:
        image = vcluster_images["syncer"]
        server = (
            "import http.server, os\n"
            "os.chdir('/tmp'); open('index.html', 'w').write('hello from web')\n"
            "http.server.ThreadingHTTPServer(('', 8080), http.server.SimpleHTTPRequestHandler)"
            ".serve_forever()\n"
        )
        vc.apply(_python_pod("web", "default", image, server, {"app": "web"}))
        vc.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            }
        )
        vc.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
        vc.apply(_python_pod("client", "other", image, DNS_CLIENT))
        done = vc.wait_for(
            "Pod",
            "client",
            lambda p: p.status.phase in ("Succeeded", "Failed"),
            namespace="other",
            timeout=120,
        )
        logs = vc.logs("client", namespace="other")
        assert done.status.phase == "Succeeded", logs + str(vc.diagnostics())
        assert "hello from web" in logs
        from kubernetes import client

        core = client.CoreV1Api(vc.api_client)
        dns = core.read_namespaced_service("kube-dns", "kube-system")
        web = core.read_namespaced_service("web", "default")
        assert f"GOT http://web.default {web.spec.cluster_ip} hello from web" in logs
        assert dns.spec.cluster_ip == vc._impl.dns_ip
        host_pods = kind_host.kubectl_json("get", "pods", "-n", vc.host_namespace)["items"]
        names = [
            (p["metadata"].get("annotations") or {}).get("vc.pytest-vcluster.io/object-name")
            for p in host_pods
        ]
        if embedded:
            _check_dns_in_vcluster_pod(kind_host, vc, core, dns, names)
        else:
            _check_dns_pod(vc, core, names)


def _check_dns_in_vcluster_pod(
    kind_host: KindHost, vc: VCluster, core: Any, dns: Any, names: list[str | None]
) -> None:
    """The virtual kube-dns is the chart's host Service: its IP, and endpoints naming the
    vcluster's pod (no CoreDNS pod anywhere); what a user deletes comes back."""
    impl = vc._impl
    host_svc = kind_host.kubectl_json(
        "get", "service", f"{impl.release}-dns", "-n", vc.host_namespace
    )
    assert dns.spec.cluster_ip == host_svc["spec"]["clusterIP"]
    assert not dns.spec.selector
    assert {(p.port, p.protocol) for p in dns.spec.ports} == {(53, "UDP"), (53, "TCP")}
    pod = kind_host.kubectl_json("get", "pod", impl.pod_name, "-n", vc.host_namespace)
    eps = core.read_namespaced_endpoints("kube-dns", "kube-system")
    assert [a.ip for a in eps.subsets[0].addresses] == [pod["status"]["podIP"]]
    assert {(p.port, p.protocol) for p in eps.subsets[0].ports} == {(1053, "UDP"), (1053, "TCP")}
    assert not any(n and n.startswith("coredns") for n in names), names
    assert not core.list_namespaced_pod("kube-system").items
    # Nothing of it is synced down: the host has only the chart's Service for it.
    host_services = kind_host.kubectl_json("get", "services", "-n", vc.host_namespace)["items"]
    assert not [s for s in host_services if s["metadata"]["name"].startswith("kube-dns")]
    core.delete_namespaced_service("kube-dns", "kube-system")
    vc.wait_for(
        "Service",
        "kube-dns",
        lambda s: s.spec.clusterIP == host_svc["spec"]["clusterIP"],  # a dynamic-client object
        namespace="kube-system",
        timeout=60,
    )


def _check_dns_pod(vc: VCluster, core: Any, names: list[str | None]) -> None:
    """The DNS pod is an ordinary synced pod in the host namespace, a bare pod the syncer
    keeps: deleted, it is created again and becomes ready."""
    assert any(n and n.startswith("coredns-") for n in names), names
    old = core.read_namespaced_pod("coredns-0", "kube-system").metadata.uid
    core.delete_namespaced_pod("coredns-0", "kube-system", grace_period_seconds=0)
    vc.wait_for(
        "Pod",
        "coredns-0",
        lambda p: (
            p.metadata.uid != old
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ),
        namespace="kube-system",
        timeout=90,
    )


def test_port_forward_carries_each_connection_alone(
    kind_host: KindHost, vcluster_images: dict[str, str], app_image: str
) -> None:
    """The plugin's port-forward opens one tunnel per connection: execs that close their
    connection abruptly (with ``kubectl port-forward`` each could end every connection: "lost
    connection to pod") leave a watch opened before them running, on the same local port."""
    import select
    import subprocess

    kind_host.load_images([app_image])
    info = kind_host.info()
    with VCluster(info, "e2e-pf", images=vcluster_images, timeout=180, port_forward=True) as vc:
        vc.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "sh"},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "c", "image": app_image, "imagePullPolicy": "Never",
                                    "command": ["sleep", "3600"]}],
                },
            }
        )  # fmt: skip
        vc.wait_for("Pod", "sh", "Ready", timeout=120)
        port = vc._impl.local_port  # type: ignore[union-attr]
        watch = subprocess.Popen(
            [str(vc.tool("kubectl")), f"--kubeconfig={vc.kubeconfig_path}", "get", "pods",
             "-w", "-o", "name"],
            stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        try:
            assert watch.stdout is not None
            assert watch.stdout.readline().strip() == "pod/sh"
            for _ in range(10):
                vc.kubectl("exec", "sh", "--", "true")
                vc.kubectl("exec", "-i", "sh", "--", "cat", input="x" * 100_000)
            assert watch.poll() is None, "the watch ended"
            vc.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
            vc.kubectl("delete", "pod", "sh", "--wait=false")
            ready, _, _ = select.select([watch.stdout], [], [], 30)
            assert ready, "the watch saw nothing after the execs"
            assert watch.stdout.readline().strip() == "pod/sh"
        finally:
            watch.kill()
            watch.wait()
        assert vc._impl.local_port == port  # type: ignore[union-attr]
        stats = vc._impl.port_forward_stats  # type: ignore[union-attr]
        assert stats["failures"] == 0, stats
        assert stats["connections"] >= 20, stats


def _kubectl_sees_default(vc: VCluster, kubeconfig: Path) -> bool:
    """A new kubectl process, given only ``kubeconfig``, reads the vcluster's namespace."""
    import subprocess

    out = subprocess.run(
        [str(vc.tool("kubectl")), f"--kubeconfig={kubeconfig}", "get", "ns", "default", "-o",
         "name"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return out.strip() == "namespace/default"


def test_api_reached_at_the_node_port(
    kind_host: KindHost, vcluster_images: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """This machine routes to the kind node: the kubeconfig names the node's address and the
    release's node port (the certificate names that address; helm kept the port it adopted),
    and kubectl works with it as it is. Where the node is not reachable, a port-forward on
    127.0.0.1 instead."""

    import yaml

    info = kind_host.info()
    address = info.node_address()
    assert address
    assert address != "127.0.0.1"
    with VCluster(info, "e2e-np", images=vcluster_images, timeout=180) as vc:
        cluster = yaml.safe_load(vc.kubeconfig_path.read_text())["clusters"][0]["cluster"]
        svc = kind_host.kubectl_json("get", "service", "e2e-np", "-n", vc.host_namespace)
        assert svc["spec"]["type"] == "NodePort"
        assert cluster["server"] == f"https://{address}:{svc['spec']['ports'][0]['nodePort']}"
        assert _kubectl_sees_default(vc, vc.kubeconfig_path)
        assert vc._impl.port_forward_stats == {}  # type: ignore[union-attr]

    # Not reachable (Docker Desktop's VM, a remote daemon): the port-forward, and a line why.
    lines: list[str] = []
    monkeypatch.setattr(
        "pytest_vcluster.hosts.incluster.runtime.reachable", lambda address, port: False
    )
    with VCluster(
        info, "e2e-np2", images=vcluster_images, timeout=180, progress=lines.append
    ) as vc:
        cluster = yaml.safe_load(vc.kubeconfig_path.read_text())["clusters"][0]["cluster"]
        assert cluster["server"].startswith("https://127.0.0.1:")
        vc.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
        assert any("not reachable from here: through a port-forward" in ln for ln in lines)


def test_kept_vcluster_answers_without_this_process(
    kind_host: KindHost, vcluster_images: dict[str, str], cache_dir: Path
) -> None:
    """Kept at its node port, a vcluster needs no helper process after the run: its record
    names none, and a new process (kubectl) reads it with the kubeconfig as written."""
    import time

    from pytest_vcluster.reaper import delete_host_namespace

    vc = VCluster(kind_host.info(), "e2e-keep", images=vcluster_images, timeout=180,
                  detachable=True)  # fmt: skip
    vc.create()
    try:
        record = vc.detach()
        assert record.pids == {}
        assert _kubectl_sees_default(vc, Path(record.kubeconfig))
    finally:
        delete_host_namespace(cache_dir, kind_host.kubeconfig_path, vc.host_namespace)
        end = time.monotonic() + 90
        while time.monotonic() < end:
            proc = kind_host.kubectl_run("get", "ns", vc.host_namespace, check=False)
            if proc.returncode != 0:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"{vc.host_namespace} still there")
