"""``--vcluster-prewarm=1`` on the kind host: the next vcluster starts while a test runs, under
its CPU budget (the default, ``idle``: the least CPU request, no limit); the next test gets it
with the chart's requests back, in place (same pod, no restart); a test whose marker asks for
another spec never gets it; the unused one goes at session end."""

from __future__ import annotations

import pytest

from pytest_vcluster.hosts.kind import KindHost

from .conftest import E2E_CLUSTER

pytestmark = pytest.mark.e2e

INNER = """
import json, os, time
from pathlib import Path

import pytest
from kubernetes import client, config

STATE = Path(os.environ["E2E_STATE"])
KUBECONFIG = os.environ["E2E_HOST_KUBECONFIG"]
HOST = client.CoreV1Api(config.new_client_from_config(config_file=KUBECONFIG))


def cpu(resources):
    return {"requests": (resources.requests or {}).get("cpu"),
            "limits": (resources.limits or {}).get("cpu")}


def limits(ns):
    pod = HOST.read_namespaced_pod(ns.removeprefix("vcluster-") + "-0", ns)
    spec = {c.name: cpu(c.resources) for c in pod.spec.containers}
    applied = {s.name: cpu(s.resources) if s.resources else None
               for s in pod.status.container_statuses or []}
    restarts = sum(s.restart_count for s in pod.status.container_statuses or [])
    return spec, applied, restarts, pod.metadata.uid


def test_1(vcluster):
    run = HOST.read_namespace(vcluster.host_namespace).metadata.labels["pytest-vcluster.io/run-id"]
    deadline = time.monotonic() + 240
    while True:  # the pool's vcluster appears while this test runs, under its budget
        spaces = HOST.list_namespace(label_selector="pytest-vcluster.io/run-id=" + run).items
        others = [n.metadata.name for n in spaces if n.metadata.name != vcluster.host_namespace]
        if others:
            try:
                spec, applied, _, uid = limits(others[0])
            except Exception:
                spec = {}
            if spec:
                break
        assert time.monotonic() < deadline, "no pooled vcluster started"
        time.sleep(0.5)
    idle = {"requests": "1m", "limits": None}  # the least weight; the whole node when idle
    assert spec == {"control-plane": idle, "syncer": idle}, spec
    STATE.write_text(json.dumps({"pooled": others[0], "uid": uid}))


def test_2(vcluster):
    pooled = json.loads(STATE.read_text())
    assert vcluster.host_namespace == pooled["pooled"]
    deadline = time.monotonic() + 60
    while True:  # lifted in the spec at once; the kubelet applies it in place
        spec, applied, restarts, uid = limits(vcluster.host_namespace)
        if applied == spec:
            break
        assert time.monotonic() < deadline, (spec, applied)
        time.sleep(0.5)
    assert spec == {  # the chart's requests
        "control-plane": {"requests": "50m", "limits": None},
        "syncer": {"requests": "10m", "limits": None},
    }
    assert (restarts, uid) == (0, pooled["uid"])  # the same pod, nothing restarted
    core = client.CoreV1Api(vcluster.api_client)
    core.create_namespaced_config_map("default", {"metadata": {"name": "works"}})


@pytest.mark.vcluster(values={"coredns": {"enabled": False}})
def test_3(vcluster):
    pooled = json.loads(STATE.read_text())
    assert vcluster.host_namespace != pooled["pooled"]
    spec, _, _, _ = limits(vcluster.host_namespace)
    assert spec == {  # its own start: no budget
        "control-plane": {"requests": "50m", "limits": None},
        "syncer": {"requests": "10m", "limits": None},
    }
"""
MANAGED = "app.kubernetes.io/managed-by=pytest-vcluster"


def test_pool_on_kind_under_a_cpu_budget(
    pytester: pytest.Pytester,
    kind_host: KindHost,
    images_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("E2E_STATE", str(pytester.path / "state.json"))
    monkeypatch.setenv("E2E_HOST_KUBECONFIG", str(kind_host.kubeconfig_path))
    pytester.makepyfile(INNER)
    before = kind_host.kubectl_run("get", "namespaces", "-l", MANAGED, "-o", "name").stdout
    result = pytester.runpytest_subprocess(
        "--vcluster-host=kind",
        f"--vcluster-kind-cluster={E2E_CLUSTER}",
        f"--vcluster-kind-image={kind_host.image or ''}",
        f"--vcluster-cache-dir={kind_host.cache_dir}",
        "--vcluster-prewarm=1",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "-v",
        "-s",
    )
    result.assert_outcomes(passed=3)
    out = result.stdout.str()  # in either order: lifted while starting, or once ready
    assert "prewarmed, ready" in out
    assert "CPU budget lifted" in out
    # The pool's next vcluster (started after test_2 took one) was removed at the end.
    after = kind_host.kubectl_run("get", "namespaces", "-l", MANAGED, "-o", "name").stdout
    assert after == before
