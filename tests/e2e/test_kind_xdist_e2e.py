"""Two xdist workers on one kind host: each gets its own vcluster, neither sees the other's."""

from __future__ import annotations

import pytest

from pytest_vcluster.hosts.kind import KindHost

from .conftest import E2E_CLUSTER

pytestmark = pytest.mark.e2e

INNER = """
import json, os, time
from pathlib import Path

import pytest
from kubernetes import client

BARRIER = Path(os.environ["E2E_BARRIER"])


@pytest.mark.parametrize("me", ["a", "b"])
def test_isolated(vcluster, me):
    core = client.CoreV1Api(vcluster.api_client)
    body = {"metadata": {"name": "mine-" + me}, "data": {"who": me}}
    core.create_namespaced_config_map("default", body)
    (BARRIER / me).write_text(json.dumps([vcluster.name, vcluster.host_namespace]))
    other = "b" if me == "a" else "a"
    deadline = time.monotonic() + 240
    while not (BARRIER / other).exists():  # both vclusters exist at the same time
        assert time.monotonic() < deadline, "the other worker never got its vcluster"
        time.sleep(0.2)
    theirs = json.loads((BARRIER / other).read_text())
    assert theirs[0] != vcluster.name and theirs[1] != vcluster.host_namespace
    names = [c.metadata.name for c in core.list_namespaced_config_map("default").items]
    assert "mine-" + me in names
    assert "mine-" + other not in names
    time.sleep(1)  # let the other one look too before this vcluster goes
"""


def test_two_workers_get_isolated_vclusters(
    pytester: pytest.Pytester,
    kind_host: KindHost,
    images_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    barrier = pytester.mkdir("barrier")
    monkeypatch.setenv("E2E_BARRIER", str(barrier))
    pytester.makepyfile(INNER)
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "--vcluster-host=kind",
        f"--vcluster-kind-cluster={E2E_CLUSTER}",
        f"--vcluster-kind-image={kind_host.image or ''}",
        f"--vcluster-cache-dir={kind_host.cache_dir}",
        "--vcluster-prewarm=0",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=2)
    left = kind_host.kubectl_run(
        "get", "namespaces", "-l", "app.kubernetes.io/managed-by=pytest-vcluster", "-o", "name"
    ).stdout
    assert left.strip() == ""
