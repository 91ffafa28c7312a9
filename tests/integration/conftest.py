from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver
from pytest_vcluster.errors import VClusterError
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_vcluster import LocalVCluster
from pytest_vcluster.versions import parse_k8s_version


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_binaries(pytestconfig: pytest.Config) -> dict[str, Path]:
    """The real binaries of the default Kubernetes version (fail, never skip, when missing)."""
    resolver = BinaryResolver(parse_k8s_version(None), allow_build=False, download_base="off")
    try:
        return {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
    except VClusterError as exc:
        pytest.fail(f"{exc}\nRun `pytest-vcluster binaries --build` first.", pytrace=False)


# -- the syncer tests (test_syncer*.py): a local host with kwok nodes and a vcluster on it --
# Module-scoped: each module gets its own; modules with a `host` or `vc` of their own use that.
@pytest.fixture(scope="module")
def host(local_binaries: dict[str, Path]) -> Iterator[LocalHost]:
    with LocalHost(parse_k8s_version(None), local_binaries) as h:
        yield h


@pytest.fixture(scope="module")
def vc(host: LocalHost) -> Iterator[LocalVCluster]:
    with LocalVCluster(host.info(), "sync") as v:
        yield v


@pytest.fixture(scope="module")
def vcore(vc: LocalVCluster) -> client.CoreV1Api:
    core = client.CoreV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))
    # Several tests work in team-a; with xdist any of them may run first on a worker.
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team-a")))
    # Pods are refused until the ServiceAccount controller made the namespace's `default`.
    deadline = time.monotonic() + 30
    while not core.list_namespaced_service_account(
        "team-a", field_selector="metadata.name=default"
    ).items:
        if time.monotonic() > deadline:
            raise AssertionError("no default ServiceAccount in team-a after 30 s")
        time.sleep(0.05)
    return core


@pytest.fixture(scope="module")
def hcore(host: LocalHost) -> client.CoreV1Api:
    return client.CoreV1Api(host.api_client())
