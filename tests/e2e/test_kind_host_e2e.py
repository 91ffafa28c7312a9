"""Acceptance of the offline kind host: node Ready, a locally built image runs, logs and exec
work, a Service resolves through cluster DNS from another pod, a PVC binds through
local-path-provisioner; then error paths against the real cluster. Everything made is deleted.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vcluster.hosts.kind import (
    KindHost,
    KindImageMissingError,
    KindVersionMismatchError,
)
from pytest_vcluster.versions import K8sVersion, parse_k8s_version

pytestmark = pytest.mark.e2e

APP = """
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: {ns}
  labels: {{app: web}}
spec:
  containers:
    - name: web
      image: {image}
      imagePullPolicy: Never
      command: ["/bin/sh", "-c"]
      args:
        - mkdir -p /www && echo hello-from-app > /www/index.html && echo app-started &&
          exec httpd -f -p 8080 -h /www
      ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {ns}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: {ns}
spec:
  containers:
    - name: client
      image: {image}
      imagePullPolicy: Never
      command: ["/bin/sh", "-c", "sleep 3600"]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: {ns}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: writer
  namespace: {ns}
spec:
  containers:
    - name: writer
      image: {image}
      imagePullPolicy: Never
      command: ["/bin/sh", "-c", "echo persisted > /data/file && sleep 3600"]
      volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
    - name: data
      persistentVolumeClaim: {{claimName: data}}
"""


@pytest.fixture(scope="module")
def namespace(kind_host: KindHost, app_image: str) -> Iterator[str]:
    ns = f"e2e-{uuid.uuid4().hex[:6]}"
    kind_host.kubectl_run("create", "namespace", ns)
    kind_host.load_images([app_image])
    kind_host.kubectl_run("apply", "-f", "-", input=APP.format(ns=ns, image=app_image))
    yield ns
    kind_host.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)


def wait_for(host: KindHost, what: str, check: object, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check() if callable(check) else None
        if last:
            return last
        time.sleep(1)
    events = host.kubectl_run("get", "events", "-A", "--sort-by=.lastTimestamp", check=False)
    pytest.fail(f"{what} did not happen in {timeout}s; last={last!r}\n{events.stdout[-3000:]}")


def pod_phase(host: KindHost, ns: str, name: str) -> str:
    out = host.kubectl_run("get", "pod", "-n", ns, name, "-o", "json", check=False).stdout
    return str(json.loads(out)["status"].get("phase")) if out else ""


def test_node_is_ready(kind_host: KindHost) -> None:
    nodes = kind_host.kubectl_json("get", "nodes")["items"]
    assert nodes
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
        assert node["status"]["nodeInfo"]["kubeletVersion"] == kind_host.k8s.tag


def test_kubeconfig_stays_in_the_cache(kind_host: KindHost, cache_dir: Path) -> None:
    assert kind_host.kubeconfig_path.is_relative_to(cache_dir)
    server = kind_host.kubectl_run("config", "view", "--minify", "-o", "json").stdout
    assert "https://127.0.0.1:" in server
    info = kind_host.info()
    assert info.kind == "kind"
    assert info.server.startswith("https://127.0.0.1:")


def test_a_second_user_shares_the_cluster(
    kind_host: KindHost, tools: dict[str, Path], cache_dir: Path, k8s: K8sVersion
) -> None:
    """Another handle (an xdist worker, a parallel run) reuses it; leaving does not delete it."""
    other = KindHost(k8s, tools["kind"], tools["kubectl"], cache_dir, name=kind_host.name)
    other.start()
    assert not other.created
    other.stop()
    assert kind_host.exists()
    assert kind_host.kubectl_run("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_local_image_runs_with_logs_and_exec(kind_host: KindHost, namespace: str) -> None:
    wait_for(kind_host, "app Running", lambda: pod_phase(kind_host, namespace, "app") == "Running")
    logs = kind_host.kubectl_run("logs", "-n", namespace, "app").stdout
    assert "app-started" in logs
    out = kind_host.kubectl_run("exec", "-n", namespace, "app", "--", "cat", "/www/index.html")
    assert out.stdout.strip() == "hello-from-app"


def test_service_resolves_through_cluster_dns(kind_host: KindHost, namespace: str) -> None:
    wait_for(
        kind_host, "client Running", lambda: pod_phase(kind_host, namespace, "client") == "Running"
    )
    wait_for(kind_host, "app Running", lambda: pod_phase(kind_host, namespace, "app") == "Running")
    fqdn = f"web.{namespace}.svc.cluster.local"

    def fetch() -> str:
        # busybox's static wget crashes without NSS libraries; nc resolves through CoreDNS fine
        request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {fqdn} 80"
        proc = kind_host.kubectl_run(
            "exec", "-n", namespace, "client", "--", "sh", "-c", request, check=False
        )
        return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""

    assert wait_for(kind_host, "HTTP through the Service", fetch, timeout=60) == "hello-from-app"
    lookup = kind_host.kubectl_run("exec", "-n", namespace, "client", "--", "nslookup", fqdn)
    assert "Address" in lookup.stdout


def test_pvc_binds_through_local_path(kind_host: KindHost, namespace: str) -> None:
    def bound() -> bool:
        pvc = kind_host.kubectl_json("get", "pvc", "-n", namespace, "data")
        return bool(pvc["status"].get("phase") == "Bound")

    wait_for(kind_host, "PVC Bound", bound, timeout=120)
    wait_for(
        kind_host, "writer Running", lambda: pod_phase(kind_host, namespace, "writer") == "Running"
    )
    out = kind_host.kubectl_run("exec", "-n", namespace, "writer", "--", "cat", "/data/file")
    assert out.stdout.strip() == "persisted"


def test_reuse_with_another_version_is_refused(
    kind_host: KindHost, tools: dict[str, Path], cache_dir: Path, k8s: K8sVersion
) -> None:
    other = parse_k8s_version("1.36" if k8s.minor != 36 else "1.35")
    clash = KindHost(other, tools["kind"], tools["kubectl"], cache_dir, name=kind_host.name)
    with pytest.raises(KindVersionMismatchError, match=f"exists with Kubernetes {k8s.tag}"):
        clash.start()
    assert kind_host.exists()  # refused, not deleted


def test_missing_local_image_is_a_clear_error(
    tools: dict[str, Path], cache_dir: Path, k8s: K8sVersion
) -> None:
    host = KindHost(
        k8s,
        tools["kind"],
        tools["kubectl"],
        cache_dir,
        name="pytest-vcluster-e2e-missing",
        image=f"pytest-vcluster/kind-node:{k8s.tag}-doesnotexist",
    )
    with pytest.raises(KindImageMissingError, match=r"images/kind-node/build\.py"):
        host.start()
    assert not host.exists()
