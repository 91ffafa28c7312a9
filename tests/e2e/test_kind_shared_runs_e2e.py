"""Three pytest runs share one kind host at the same time; one is SIGKILLed. The other two
clean up after themselves; after its expiry the janitor removes what the killed one left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pytest_vcluster.hosts.kind import KindHost

from .conftest import E2E_CLUSTER

pytestmark = pytest.mark.e2e

INNER = """
import os, time
from pathlib import Path

BARRIER = Path(os.environ["E2E_BARRIER"])


def test_hold(vcluster):
    (BARRIER / os.environ["E2E_RUN"]).write_text(vcluster.host_namespace)
    deadline = time.monotonic() + 300
    while not (BARRIER / "release").exists():
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.2)
"""
TTL = 30
MANAGED = "app.kubernetes.io/managed-by=pytest-vcluster"


def _namespaces(host: KindHost) -> set[str]:
    out = host.kubectl_run("get", "namespaces", "-l", MANAGED, "-o", "name").stdout
    return {line.split("/", 1)[1] for line in out.split()}


def test_three_runs_one_killed_leave_nothing_after_the_ttl(
    pytester: pytest.Pytester,
    kind_host: KindHost,
    vcluster_images: dict[str, str],
) -> None:
    barrier = pytester.mkdir("barrier")
    pytester.makepyfile(INNER)
    env = {
        **os.environ,
        "PYTEST_VCLUSTER_CONTROL_PLANE_IMAGE": vcluster_images["controlPlane"],
        "PYTEST_VCLUSTER_SYNCER_IMAGE": vcluster_images["syncer"],
        "E2E_BARRIER": str(barrier),
    }
    argv = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
        "--vcluster-host=kind", f"--vcluster-kind-cluster={E2E_CLUSTER}",
        f"--vcluster-cache-dir={kind_host.cache_dir}", "--vcluster-prewarm=0",
        f"--vcluster-ttl={TTL}",
    ]  # fmt: skip
    if kind_host.image:
        argv.append(f"--vcluster-kind-image={kind_host.image}")
    before = _namespaces(kind_host)
    runs: dict[str, subprocess.Popen[str]] = {}
    for name in ("a", "b", "killed"):
        runs[name] = subprocess.Popen(
            argv, cwd=pytester.path, env={**env, "E2E_RUN": name}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not all((barrier / name).exists() for name in runs):
            for name, proc in runs.items():
                if proc.poll() is not None:
                    pytest.fail(f"run {name} ended early:\n{proc.communicate()[0][-3000:]}")
            assert time.monotonic() < deadline, "not all three runs got their vcluster"
            time.sleep(0.5)
        spaces = {name: (barrier / name).read_text() for name in runs}
        assert len(set(spaces.values())) == 3
        runs["killed"].send_signal(signal.SIGKILL)
        runs["killed"].wait()
        (barrier / "release").write_text("")
        for name in ("a", "b"):
            out = runs[name].communicate(timeout=300)[0]
            assert runs[name].returncode == 0, out[-3000:]
        # The two that ended normally took theirs along; the killed one's is still there.
        left = _namespaces(kind_host) - before
        assert spaces["a"] not in left
        assert spaces["b"] not in left
        assert spaces["killed"] in left
        expires = int(
            kind_host.kubectl_json("get", "namespace", spaces["killed"])["metadata"]["labels"][
                "pytest-vcluster.io/expires"
            ]
        )
        assert expires <= time.time() + TTL
        time.sleep(max(0.0, expires - time.time() + 1))
        janitor = subprocess.run(
            [sys.executable, "-m", "pytest_vcluster.janitor", "--kubeconfig",
             str(kind_host.kubeconfig_path)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert f"deleted namespace {spaces['killed']}" in janitor.stdout + janitor.stderr
        deadline = time.monotonic() + 120
        while _namespaces(kind_host) - before:
            assert time.monotonic() < deadline, _namespaces(kind_host) - before
            time.sleep(1)
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for ns in _namespaces(kind_host) - before:  # a failure above leaves nothing either
            kind_host.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)
