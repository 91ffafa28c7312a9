"""The plugin on a kind host: host fixtures for the kind cluster and a vcluster released into it."""

from __future__ import annotations

import pytest

from pytest_vcluster.hosts.kind import KindHost

from .conftest import E2E_CLUSTER

pytestmark = pytest.mark.e2e


def test_plugin_reuses_the_kind_host_and_runs_a_vcluster_on_it(
    pytester: pytest.Pytester, kind_host: KindHost
) -> None:
    pytester.makepyfile(
        f"""
        from kubernetes import client

        def test_host(host_client, host_kubeconfig_path):
            nodes = client.CoreV1Api(host_client).list_node().items
            assert [n.metadata.name for n in nodes] == ["{E2E_CLUSTER}-control-plane"]
            assert host_kubeconfig_path.exists()

        def test_vcluster_on_kind(vcluster):
            assert vcluster.host.kind == "kind"
            assert client.CoreV1Api(vcluster.api_client).read_namespaced_service_account(
                "default", "default"
            )
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
    result.assert_outcomes(passed=2)
    assert kind_host.exists()  # the inner run reused the cluster and did not delete it
