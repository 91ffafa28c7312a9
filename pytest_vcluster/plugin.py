"""pytest entry point: options, the marker, header and summary, host fixtures, diagnostics."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .config import Settings, add_options, settings_from
from .errors import VClusterError
from .fixtures import (
    ACTIVE,
    REPORTS,
    SETTINGS,
    Manager,
    run_id,
    vcluster,
    vcluster_factory,
    vcluster_namespace,
    vcluster_session,
)
from .hosts.base import HostInfo
from .markers import MARKER_LINE, parse_marker

__all__ = ["vcluster", "vcluster_factory", "vcluster_namespace", "vcluster_session"]
_STARTED = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_LINE)
    config.stash[SETTINGS] = settings_from(config)  # bad values fail here, before any test
    config.stash[_STARTED] = time.time()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parse_marker(item)  # one UsageError for a malformed marker, before any cluster exists


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = config.stash[SETTINGS]
    host = s.host
    if host == "kubeconfig":
        host += f" ({s.kubeconfig}, context {s.context or 'current'})"
    return [
        f"vcluster: host={host} kubernetes={s.k8s} keep={s.keep} prewarm={s.prewarm} "
        f"reuse-host={str(s.reuse_host).lower()} cache={s.cache_dir}",
        binaries_line(s),
    ]


def binaries_line(s: Settings) -> str:
    """Which binaries this host needs, their versions, and which are in the cache already
    (a cheap look at the cache manifests: resolving them fully hashes ~300 MB)."""
    from .binaries import LOCAL_HOST_TOOLS, BinaryResolver

    tools = {
        "local": LOCAL_HOST_TOOLS,
        "kind": ("kind", "kubectl", "helm"),
        "kubeconfig": ("kubectl", "helm"),
    }[s.host]
    resolver = BinaryResolver(s.k8s, s.cache_dir)
    parts = []
    for tool in tools:
        version = resolver.version_of(tool)
        cached = resolver.cache_entry(tool, version).with_name("manifest.json").is_file()
        parts.append(f"{tool} {version}{'' if cached else ' (not cached)'}")
    return "vcluster binaries: " + ", ".join(parts)


def _progress(config: pytest.Config) -> Any:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    verbose = int(config.getoption("verbose")) > 0  # get_verbosity() is pytest >= 8 only

    def emit(msg: str) -> None:
        # Builds take minutes: always say so; readiness steps only under -v.
        if reporter is None or not (verbose or "build" in msg or "download" in msg):
            return
        if capman is not None:  # fixtures run with output captured
            with capman.global_and_fixture_disabled():
                reporter.write_line(msg)
        else:
            reporter.write_line(msg)

    return emit


@pytest.fixture(scope="session")
def vcluster_settings(pytestconfig: pytest.Config) -> Settings:
    """The effective pytest-vcluster settings (CLI over ini over defaults)."""
    return pytestconfig.stash[SETTINGS]


def _state_dir(config: pytest.Config, factory: pytest.TempPathFactory, s: Settings) -> Path:
    if s.reuse_host:
        return s.cache_dir / "hosts" / f"{s.host}-{s.k8s}"
    base = factory.getbasetemp()
    # xdist workers get <root>/popen-gwN: the host lives in the shared <root>.
    return (base.parent if hasattr(config, "workerinput") else base) / "vcluster-host"


@pytest.fixture(scope="session")
def vcluster_host_info(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    vcluster_settings: Settings,
) -> Iterator[HostInfo]:
    """The host this run's vclusters live on (started once per run, shared by xdist workers)."""
    s = vcluster_settings
    if s.host == "kind":
        yield from _kind_host(pytestconfig, s)
        return
    if s.host == "kubeconfig":
        yield _kubeconfig_host(pytestconfig, s)
        return
    from .hosts.shared import SharedHost

    shared = SharedHost(
        _state_dir(pytestconfig, tmp_path_factory, s),
        k8s_version=str(s.k8s),
        cache_dir=s.cache_dir,
        timeout=s.timeout,
        reuse=s.reuse_host,
    )
    _progress(pytestconfig)(f"pytest-vcluster: acquiring the {s.host} host ({s.k8s})")
    try:
        info = shared.acquire()
    except VClusterError as exc:
        pytest.fail(f"pytest-vcluster: the {s.host} host did not start: {exc}", pytrace=False)
    try:
        yield info
    finally:
        kept = any(
            json.loads(p.read_text()).get("host_supervisor_pid") == info.supervisor_pid
            for p in (s.cache_dir / "kept").glob("*.json")
        )
        if kept:  # kept vclusters need their host
            shared.reuse = True
        shared.release()


def _kind_host(config: pytest.Config, s: Settings) -> Iterator[HostInfo]:
    from .binaries import BinaryResolver
    from .hosts.kind import KindHost

    progress = _progress(config)
    try:
        r = BinaryResolver(s.k8s, s.cache_dir, progress=progress)
        host = KindHost(
            s.k8s,
            r.resolve("kind").path,
            r.resolve("kubectl").path,
            s.cache_dir,
            name=s.kind_cluster,
            image=s.kind_image,
            workers=s.kind_workers,
            reuse=s.reuse_host,
            start_docker=True,
            timeout=max(s.timeout, 300),
            progress=progress,
        )
        host.start()
    except VClusterError as exc:
        pytest.fail(f"pytest-vcluster: the kind host did not start: {exc}", pytrace=False)
    try:
        yield host.info()
    finally:
        host.stop()


def _kubeconfig_host(config: pytest.Config, s: Settings) -> HostInfo:
    from .hosts.kubeconfig import KubeconfigHost

    try:
        host = KubeconfigHost(s.kubeconfig, s.context, s.cache_dir, timeout=min(s.timeout, 15))
        _progress(config)(f"pytest-vcluster: checking host context {host.context_name!r}")
        return host.info()
    except VClusterError as exc:
        pytest.fail(f"pytest-vcluster: the kubeconfig host is not usable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def vcluster_manager(
    pytestconfig: pytest.Config, vcluster_settings: Settings, vcluster_host_info: HostInfo
) -> Iterator[Manager]:
    manager = Manager(
        vcluster_settings, vcluster_host_info, run_id(pytestconfig), _progress(pytestconfig)
    )
    try:
        yield manager
    finally:
        manager.close()


@pytest.fixture(scope="session")
def host_kubeconfig_path(vcluster_host_info: HostInfo) -> Path:
    """Path of a cluster-admin kubeconfig for the host."""
    return Path(vcluster_host_info.kubeconfig)


@pytest.fixture(scope="session")
def host_client(host_kubeconfig_path: Path) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the host (cluster-admin)."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(host_kubeconfig_path))  # type: ignore[no-untyped-call]
    try:
        yield client
    finally:
        client.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    if report.failed and report.when in ("setup", "call"):
        for vc in item.stash.get(ACTIVE, []):
            try:
                sections = vc.diagnostics()
            except Exception as exc:  # diagnostics must never mask the failure
                sections = {"diagnostics": f"could not collect: {exc!r}"}
            sections["connect"] = f"KUBECONFIG={vc.kubeconfig_path} kubectl get pods -A"
            for title, text in sections.items():
                report.sections.append((f"vcluster {vc.name}: {title}", text))
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    s = config.stash[SETTINGS]
    started = config.stash[_STARTED]
    kept = []
    for path in sorted((s.cache_dir / "kept").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("kept_at", 0) >= started:
            kept.append(record)
    if kept:
        terminalreporter.section("kept vclusters")
        for r in kept:
            terminalreporter.write_line(
                f"{r['name']}: KUBECONFIG={r['kubeconfig']} kubectl get pods -A"
            )
        terminalreporter.write_line("remove them with: pytest-vcluster reap")
