"""Faults on the local host: while a test uses its vcluster, one process is killed with
SIGKILL; it is started again (as a kubelet restarts a crashed container), the vcluster works
again, and what the test had is all there, nothing duplicated. The module has its own host, so
killing the host's etcd or API server disturbs no other module.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from syncer_helpers import running, wait_for
from urllib3.exceptions import HTTPError

from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.vcluster import VCluster

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    },
}


@pytest.fixture
def used(host: LocalHost, request: pytest.FixtureRequest) -> Iterator[VCluster]:
    """A vcluster in use: a Deployment's 3 pods running, a Service, a ConfigMap."""
    name = "fault-" + "".join(w[0] for w in request.node.callspec.id.replace("-", " ").split())
    with VCluster(host.info(), name, timeout=120) as vc:
        vc.apply(
            [
                DEPLOYMENT,
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
                },
            ]
        )
        core = client.CoreV1Api(vc.api_client)
        wait_for(lambda: running(core, "default", "app=web", 3), 60, "3 pods running")
        yield vc


def _host_pods(vc: VCluster) -> list[str]:
    core = client.CoreV1Api(vc.host_api_client())
    sel = f"vc.pytest-vcluster.io/managed-by={vc.name}"
    return [
        p.metadata.name
        for p in core.list_namespaced_pod(vc.host_namespace, label_selector=sel).items
    ]


@pytest.mark.parametrize(
    ("side", "process"),
    [
        ("vcluster", "kube-apiserver"),
        ("vcluster", "kube-controller-manager"),
        ("vcluster", "syncer"),
        ("host", "etcd"),
        ("host", "kube-apiserver"),
    ],
)
def test_a_killed_process_comes_back_and_nothing_is_lost(
    host: LocalHost, used: VCluster, side: str, process: str
) -> None:
    vc = used
    procs = vc._impl.procs if side == "vcluster" else host.procs
    child = next(c for c in procs.children if c.name == process)
    before = child.pid
    hosts_before = sorted(_host_pods(vc))
    t0 = time.monotonic()
    os.kill(before, signal.SIGKILL)

    core = client.CoreV1Api(vc.api_client)

    def answers() -> bool:
        try:
            core.list_namespaced_pod("default", _request_timeout=2)
        except (ApiException, HTTPError, OSError):
            return False
        return True

    wait_for(answers, 60, "the vcluster API again")
    # The whole path works again: a new pod is synced, runs, and its status comes back.
    core.create_namespaced_pod(
        "default",
        {"metadata": {"name": "after", "labels": {"app": "after"}},
         "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    )  # fmt: skip
    try:
        wait_for(lambda: running(core, "default", "app=after", 1), 90, "a new pod running")
    except AssertionError as exc:
        pod = core.read_namespaced_pod("after", "default")
        raise AssertionError(
            f"{exc}; virtual pod {pod.status.phase} {pod.status.conditions}; host pods "
            f"{_host_pods(vc)}; restarts: host {host.procs.restarts()}, "
            f"vcluster {vc._impl.procs.restarts()}"
        ) from None
    recovered = time.monotonic() - t0
    wait_for(lambda: child.pid != before and child.alive(), 30, f"{process} started again")
    assert child.pid != before
    assert child.alive()
    assert len(child.restarts) == 1
    assert child.restarts[0].startswith("killed by SIGKILL")
    # What the test had is all there, once: the Deployment's pods (the same ones), the
    # Service, the ConfigMap; on the host exactly one copy of each pod.
    web = running(core, "default", "app=web", 3)
    assert len(web) == 3
    assert core.read_namespaced_service("web", "default")
    assert core.read_namespaced_config_map("c", "default")
    hosts_after = sorted(_host_pods(vc))
    assert [h for h in hosts_after if h not in hosts_before] == [vc.host_name("after", "default")]
    assert set(hosts_before) <= set(hosts_after)
    if side == "vcluster":
        assert "restarted processes" in vc.diagnostics(log_lines=5)
    print(f"{side} {process}: recovered in {recovered:.1f}s")
