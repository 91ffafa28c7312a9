"""``sync=`` turns resources off (and on) for real: a vcluster without Service sync keeps its
Services to itself while its pods and ConfigMaps still reach the host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from pytest_vcluster.errors import VClusterError
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version
from syncer.translate.names import host_name


@pytest.fixture(scope="module")
def host(local_binaries: dict[str, Path]) -> Iterator[LocalHost]:
    with LocalHost(parse_k8s_version(None), local_binaries) as h:
        yield h


def _host_names(host: LocalHost, ns: str, plural: str) -> set[str]:
    status, body = host.info().rest().get(f"/api/v1/namespaces/{ns}/{plural}")
    assert status == 200, body
    return {o["metadata"]["name"] for o in body["items"]}


def test_services_off(host: LocalHost) -> None:
    with VCluster(host.info(), "nosvc", sync=["-services"]) as vc:
        core = client.CoreV1Api(vc.api_client)
        core.create_namespaced_service(
            "default", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
        )
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": "cfg"}, "data": {"a": "1"}}
        )
        pod = {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox",
                        "envFrom": [{"configMapRef": {"name": "cfg"}}],
                    }
                ]
            },
        }
        core.create_namespaced_pod("default", pod)
        ns = vc.host_namespace
        deadline = time.monotonic() + 30
        # The pod (and the ConfigMap it uses) reaching the host shows the syncer at work.
        while time.monotonic() < deadline:
            if host_name("p", "default", "nosvc") in _host_names(host, ns, "pods"):
                break
            time.sleep(0.2)
        assert host_name("p", "default", "nosvc") in _host_names(host, ns, "pods")
        assert host_name("cfg", "default", "nosvc") in _host_names(host, ns, "configmaps")
        time.sleep(1)  # the Service was created first: had it been synced, it would be there
        assert host_name("web", "default", "nosvc") not in _host_names(host, ns, "services")


def test_bad_sync_list_is_one_clear_error(host: LocalHost) -> None:
    with pytest.raises(VClusterError, match=r"sync=\['-nope'\]\): unknown resource '-nope'"):
        VCluster(host.info(), "bad", sync=["-nope"])
