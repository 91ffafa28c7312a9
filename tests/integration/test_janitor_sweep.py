"""The in-cluster janitor against a real API server (the local host's): it deletes the vcluster
namespaces past their expiry and nothing else."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.janitor import sweep

MANAGED = {"app.kubernetes.io/managed-by": "pytest-vcluster"}


@pytest.fixture
def spaces(host: LocalHost) -> Iterator[client.CoreV1Api]:
    core = client.CoreV1Api(host.api_client())
    now = int(time.time())
    made = {
        "jan-expired": {**MANAGED, "pytest-vcluster.io/expires": str(now - 60)},
        "jan-alive": {**MANAGED, "pytest-vcluster.io/expires": str(now + 3600)},
        "jan-unlabelled": {"pytest-vcluster.io/expires": str(now - 60)},  # not managed by us
    }
    for name, labels in made.items():
        core.create_namespace({"metadata": {"name": name, "labels": labels}})
    core.create_namespaced_pod(
        "jan-expired",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
    )
    yield core
    for name in made:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)


def test_expired_namespaces_go_and_the_rest_stay(spaces: client.CoreV1Api, host: LocalHost) -> None:
    dry = subprocess.run(
        [sys.executable, "-m", "pytest_vcluster.janitor", "--kubeconfig",
         str(host.kubeconfig_path), "--dry-run"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "would delete namespace jan-expired" in dry
    assert spaces.read_namespace("jan-expired").status.phase == "Active"  # dry run: untouched
    assert sweep(spaces) == ["jan-expired"]
    phases = {n: spaces.read_namespace(n).status.phase for n in ("jan-alive", "jan-unlabelled")}
    assert phases == {"jan-alive": "Active", "jan-unlabelled": "Active"}
    gone = spaces.read_namespace("jan-expired")  # terminating, or gone already
    assert gone.status.phase == "Terminating" or gone.metadata.deletion_timestamp
    assert spaces.list_namespaced_pod("jan-expired").items == []  # ended at once
    assert sweep(spaces) == []  # a terminating one is not asked again
