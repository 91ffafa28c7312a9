"""``--vcluster-host=kubeconfig`` on a real cluster: the kind cluster reached only through its
kubeconfig file (as a user's own cluster would be), images already in the cluster."""

from __future__ import annotations

import json

import pytest

from pytest_vcluster.hosts.kind import KindHost

pytestmark = pytest.mark.e2e


def test_vcluster_on_a_kubeconfig_host(
    pytester: pytest.Pytester,
    kind_host: KindHost,
    vcluster_images: dict[str, str],
    images_env: None,
) -> None:
    # What a registry does for a real cluster: the images are there before the run, and the
    # run is told which (else it takes the newest local ones, which need not be these).
    kind_host.load_images(list(vcluster_images.values()))
    pytester.makepyfile(
        """
        from kubernetes import client

        def test_vcluster(vcluster, host_client):
            assert vcluster.host.kind == "kubeconfig"
            vcluster.apply({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10.2",
                                        "imagePullPolicy": "Never"}]},
            })
            vcluster.wait_for("Pod", "p", "Ready", timeout=60)
            host = client.CoreV1Api(host_client)
            pod = host.read_namespaced_pod(vcluster.host_name("p"), vcluster.host_namespace)
            assert pod.status.phase == "Running"
            print("HOSTNS", vcluster.host_namespace)
        """
    )
    result = pytester.runpytest_subprocess(
        "--vcluster-host=kubeconfig",
        f"--vcluster-kubeconfig={kind_host.kubeconfig_path}",
        f"--vcluster-context=kind-{kind_host.name}",
        f"--vcluster-cache-dir={kind_host.cache_dir}",
        "-p",
        "no:cacheprovider",
        "-s",
    )
    result.assert_outcomes(passed=1)
    ns = next(ln.split("HOSTNS ", 1)[1].split()[0] for ln in result.outlines if "HOSTNS " in ln)
    left = kind_host.kubectl_run("get", "namespace", ns, "--ignore-not-found", "-o", "name")
    assert left.stdout.strip() == ""
    releases = kind_host.kubectl_run("get", "secrets", "-A", "-l", "owner=helm", "-o", "json")
    assert not [s for s in json.loads(releases.stdout)["items"] if s["metadata"]["namespace"] == ns]
