"""The in-cluster runtime end to end as far as a simulated host lets it go: the local host's
real API server, controller-manager and scheduler run the release's StatefulSet, kwok marks
its pod Running, and the port-forward (which needs a real kubelet) is where it stops, with the
reason, well before the timeout. What it made is gone afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.errors import InClusterError
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
    # The user's cache (helm is there; a throw-away cache would build it again).
    info = KubeconfigHost(str(host.kubeconfig_path), None, default_cache_dir()).info()
    # The timeout only bounds a run that goes wrong: under xdist load scheduling takes seconds.
    vc = VCluster(info, "rel", images=IMAGES, timeout=120, labels={"team": "a"})
    impl = vc._impl
    assert isinstance(impl, InClusterVCluster)
    seen: dict[str, str] = {}
    api = HostApi(info.kubeconfig)
    try:
        original = impl.access.start

        def start(deadline: float) -> None:  # what the release looks like at this stage
            ns = api.core.read_namespace("vcluster-rel")
            seen.update(ns.metadata.labels)
            seen["secret"] = api.secret_value("vcluster-rel", "vc-rel", "config").decode()[:20]
            original(deadline)

        impl.access.start = start  # type: ignore[method-assign]
        # A node without a kubelet is named after a short grace (InClusterError), not after
        # the whole timeout (that would be a ReadinessTimeoutError).
        with pytest.raises(InClusterError, match="error dialing backend") as failed:
            vc.create()
        assert "has not reached the kubelet of the node running pod vcluster-rel/rel-0" in str(
            failed.value
        )
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
