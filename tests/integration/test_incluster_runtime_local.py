"""The in-cluster runtime end to end as far as a simulated host lets it go: the local host's
real API server, controller-manager and scheduler run the release's StatefulSet, kwok marks
its pod Running, and the port-forward (which needs a real kubelet) is where it stops. What it
made is gone afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vcluster.errors import VClusterError
from pytest_vcluster.hosts.incluster import InClusterVCluster
from pytest_vcluster.hosts.incluster.hostapi import HostApi
from pytest_vcluster.hosts.kubeconfig import KubeconfigHost
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version

IMAGES = {
    "controlPlane": "pytest-vcluster/control-plane:v1.37.2-none",
    "syncer": "pytest-vcluster/syncer:none",
}


@pytest.fixture(scope="module")
def host(local_binaries: dict[str, Path]) -> Iterator[LocalHost]:
    with LocalHost(parse_k8s_version(None), local_binaries, nodes=1) as h:
        yield h


def test_release_runs_until_the_port_forward_and_leaves_nothing(
    host: LocalHost, tmp_path: Path
) -> None:
    info = KubeconfigHost(str(host.kubeconfig_path), None, tmp_path).info()
    # The timeout only bounds a run that goes wrong: under xdist load scheduling takes seconds.
    vc = VCluster(info, "rel", images=IMAGES, timeout=60, labels={"team": "a"})
    impl = vc._impl
    assert isinstance(impl, InClusterVCluster)
    seen: dict[str, str] = {}
    api = HostApi(info.kubeconfig)
    try:
        original = impl.forwards.start

        def start(deadline: float) -> None:  # what the release looks like at this stage
            ns = api.core.read_namespace("vcluster-rel")
            seen.update(ns.metadata.labels)
            seen["secret"] = api.secret_value("vcluster-rel", "vc-rel", "config").decode()[:20]
            original(deadline)

        impl.forwards.start = start  # type: ignore[method-assign]
        t0 = time.monotonic()
        with pytest.raises(VClusterError, match="port-forward to pod vcluster-rel/rel-0"):
            vc.create()
        assert time.monotonic() - t0 < 60
        stages = list(impl.timings)
        assert stages[:4] == [
            "images and certificates",
            "helm install",
            "pod scheduled",
            "containers running",
        ]
        assert seen["team"] == "a"
        assert seen["pod-security.kubernetes.io/enforce"] == "baseline"
        assert seen["secret"].startswith("apiVersion")
        assert not api.namespace_exists("vcluster-rel")  # a failed start removes it all
        assert not impl.workdir.exists()
    finally:
        api.close()
