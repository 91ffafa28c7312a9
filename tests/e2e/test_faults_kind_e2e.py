"""Faults on the kind host while a test uses its vcluster: the node's containerd killed."""

from __future__ import annotations

import json
import time

import pytest

from pytest_vcluster.docker import Docker
from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster

from .manifests import pod

pytestmark = pytest.mark.e2e


def test_node_containerd_killed(
    kind_host: KindHost, vcluster_images: dict[str, str], app_image: str, docker: Docker
) -> None:
    """SIGKILL to the node's containerd: systemd starts it again (``Restart=always``), the
    containers keep running in their shims — the vcluster's control plane and syncer too, so
    its API answers throughout — and the kubelet reconnects: a new pod runs, exec works in an
    old one, nothing restarted."""
    kind_host.load_images([app_image])
    with VCluster(kind_host.info(), "e2e-crd", images=vcluster_images, timeout=180) as vc:
        vc.apply(pod("before", app_image))
        vc.wait_for("Pod", "before", "Ready", timeout=120)
        node = f"{kind_host.name}-control-plane"
        old = docker.out(["exec", node, "pgrep", "-x", "containerd"]).strip()
        docker.run(["exec", node, "pkill", "-9", "-x", "containerd"])
        t0 = time.monotonic()
        vc.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "during"}})
        vc.apply(pod("after", app_image))
        vc.wait_for("Pod", "after", "Ready", timeout=120)
        print(f"a new pod ready {time.monotonic() - t0:.1f}s after containerd was killed")
        new = docker.out(["exec", node, "pgrep", "-x", "containerd"]).strip()
        assert new
        assert new != old
        assert vc.kubectl("exec", "before", "--", "echo", "still").stdout.strip() == "still"
        listed = json.loads(vc.kubectl("get", "pods", "-o", "json").stdout)["items"]
        pods = {p["metadata"]["name"]: p for p in listed}
        for name in ("before", "after"):
            statuses = pods[name]["status"]["containerStatuses"]
            assert [s["restartCount"] for s in statuses] == [0], (name, statuses)
        host = kind_host.kubectl_json("get", "pods", "-n", vc.host_namespace)["items"]
        control = next(p for p in host if p["metadata"]["name"] == "e2e-crd-0")
        assert [s["restartCount"] for s in control["status"]["containerStatuses"]] == [0, 0]
