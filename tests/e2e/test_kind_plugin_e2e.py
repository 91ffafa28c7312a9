"""The plugin on a kind host: ``--vcluster-host=kind`` gives host fixtures for the kind cluster."""

from __future__ import annotations

import pytest

from pytest_vcluster.hosts.kind import KindHost

from .conftest import E2E_CLUSTER

pytestmark = pytest.mark.e2e


def test_plugin_reuses_the_kind_host_and_reports_the_missing_chart(
    pytester: pytest.Pytester, kind_host: KindHost
) -> None:
    pytester.makepyfile(
        f"""
        from kubernetes import client

        def test_host(host_client, host_kubeconfig_path):
            nodes = client.CoreV1Api(host_client).list_node().items
            assert [n.metadata.name for n in nodes] == ["{E2E_CLUSTER}-control-plane"]
            assert host_kubeconfig_path.exists()

        def test_vcluster_needs_chart(vcluster):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--vcluster-host=kind",
        f"--vcluster-kind-cluster={E2E_CLUSTER}",
        f"--vcluster-kind-image={kind_host.image or ''}",
        f"--vcluster-cache-dir={kind_host.cache_dir}",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*Helm releases of chart/, which is not built yet*"])
    assert kind_host.exists()  # the inner run reused the cluster and did not delete it
