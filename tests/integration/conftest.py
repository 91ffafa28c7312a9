from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver
from pytest_vcluster.errors import VClusterError
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
