"""pytest entry point: options, header, and the host fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .binaries import LOCAL_HOST_TOOLS, BinaryResolver
from .config import Settings, add_options, settings_from
from .errors import VClusterError

if TYPE_CHECKING:
    from .hosts.local import LocalHost

_SETTINGS = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SETTINGS] = settings_from(config)  # bad values fail here, before any test


def pytest_report_header(config: pytest.Config) -> str:
    s = config.stash[_SETTINGS]
    return f"vcluster: host={s.host} kubernetes={s.k8s} cache={s.cache_dir}"


def _progress(config: pytest.Config) -> Any:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    verbose = config.get_verbosity() > 0

    def emit(msg: str) -> None:
        # Builds take minutes: always say so; readiness steps only under -v.
        if reporter is not None and (verbose or "build" in msg or "download" in msg):
            reporter.write_line(msg)

    return emit


@pytest.fixture(scope="session")
def vcluster_settings(pytestconfig: pytest.Config) -> Settings:
    """The effective pytest-vcluster settings (CLI over ini over defaults)."""
    return pytestconfig.stash[_SETTINGS]


@pytest.fixture(scope="session")
def vcluster_host(pytestconfig: pytest.Config, vcluster_settings: Settings) -> Iterator[LocalHost]:
    """The host every vcluster of this session runs on (started once, stopped at the end)."""
    from .hosts.local import LocalHost

    s = vcluster_settings
    progress = _progress(pytestconfig)
    resolver = BinaryResolver(s.k8s, s.cache_dir, progress=progress)
    try:
        paths = {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
        host = LocalHost(s.k8s, paths, progress=progress, timeout=s.timeout)
        host.start()
    except VClusterError as exc:
        pytest.fail(f"pytest-vcluster: the {s.host} host did not start: {exc}", pytrace=False)
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="session")
def host_kubeconfig_path(vcluster_host: LocalHost) -> Path:
    """Path of a cluster-admin kubeconfig for the host."""
    return vcluster_host.kubeconfig_path


@pytest.fixture(scope="session")
def host_client(vcluster_host: LocalHost) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the host (cluster-admin)."""
    client = vcluster_host.api_client()
    try:
        yield client
    finally:
        client.close()
