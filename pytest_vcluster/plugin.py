"""pytest entry point: options, the marker, header and summary, host fixtures, diagnostics."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .config import add_options, settings_from
from .errors import VClusterError
from .fixtures import (
    ACTIVE,
    DECLARED,
    REPORTS,
    SETTINGS,
    run_id,
    vcluster,
    vcluster_clean,
    vcluster_factory,
    vcluster_k8s_version,
    vcluster_namespace,
    vcluster_session,
    warn_cleanup,
)
from .hosts.base import Host, HostContext
from .hosts.registry import host_type
from .markers import MARKER_LINE, cell_label, marker_versions, marker_where, parse_marker
from .settings import Settings
from .spec import SpecError, check_supported

if TYPE_CHECKING:
    from .manager import Manager

__all__ = [
    "vcluster",
    "vcluster_clean",
    "vcluster_factory",
    "vcluster_k8s_version",
    "vcluster_namespace",
    "vcluster_session",
]
_STARTED = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_LINE)
    config.stash[SETTINGS] = settings_from(config)  # bad values fail here, before any test
    config.stash[_STARTED] = time.time()


def pytest_unconfigure(config: pytest.Config) -> None:
    DECLARED.clear()  # declarations belong to this run (in-process pytester runs follow)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A version matrix: each test using a vcluster runs once per version of its marker's
    ``k8s_version`` list, else of ``--vcluster-k8s-version=A,B`` (ids ``[k8s-1.35]``); the
    session's vclusters exist once per version."""
    if "vcluster_k8s_version" not in metafunc.fixturenames:
        return
    try:
        versions = marker_versions(metafunc.definition)
    except pytest.UsageError:
        return  # reported once, as a usage error, by pytest_collection_modifyitems
    versions = versions or metafunc.config.stash[SETTINGS].k8s_matrix
    if not versions:
        return
    labels = [cell_label(v) for v in versions]
    metafunc.parametrize(
        "vcluster_k8s_version",
        labels,
        ids=[f"k8s-{label}" for label in labels],
        indirect=True,
        scope="session",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """One UsageError for a malformed marker, or one (or a vcluster_fixture) asking for what
    the host cannot honour, before any cluster exists."""
    s = config.stash[SETTINGS]
    provides = host_type(s.host).provides
    specs = [(marker_where(item), parse_marker(item)) for item in items]
    try:
        for where, spec in specs + DECLARED:
            if isinstance(spec, SpecError):
                raise spec
            check_supported(spec, s.host, provides, where)
    except SpecError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = config.stash[SETTINGS]
    kind = host_type(s.host)
    host = kind.describe(s)
    prewarm = kind.provides.default_prewarm if s.prewarm is None else s.prewarm
    return [
        f"vcluster: host={host} kubernetes={s.k8s} keep={s.keep} prewarm={prewarm} "
        f"reuse-host={str(s.reuse_host).lower()} cache={s.cache_dir}",
        binaries_line(s),
    ]


def binaries_line(s: Settings) -> str:
    """Which binaries this host needs, their versions, and which are in the cache already
    (a cheap look at the cache manifests: resolving them fully hashes ~300 MB)."""
    from .binaries import BinaryResolver

    tools = host_type(s.host).provides.tools
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
) -> Iterator[Host]:
    """The host this run's vclusters live on (started once per run, shared by xdist workers)."""
    s = vcluster_settings
    kind = host_type(s.host)
    ctx = HostContext(s, _state_dir(pytestconfig, tmp_path_factory, s), _progress(pytestconfig))
    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(kind.open(ctx))
        except VClusterError as exc:
            pytest.fail(f"pytest-vcluster: the {s.host} host {kind.unusable}: {exc}", pytrace=False)
        yield host


@pytest.fixture(scope="session")
def vcluster_manager(
    pytestconfig: pytest.Config, vcluster_settings: Settings, vcluster_host_info: Host
) -> Iterator[Manager]:
    from .manager import Manager

    manager = Manager(
        vcluster_settings,
        vcluster_host_info,
        run_id(pytestconfig),
        _progress(pytestconfig),
        warn=warn_cleanup,
    )
    try:
        yield manager
    finally:
        manager.close()


@pytest.fixture(scope="session")
def host_kubeconfig_path(vcluster_host_info: Host) -> Path:
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
    failed = report.failed and report.when in ("setup", "call")
    if failed:
        for vc in item.stash.get(ACTIVE, []):
            try:
                sections = vc.diagnostics()
            except Exception as exc:  # diagnostics must never mask the failure
                sections = {"diagnostics": f"could not collect: {exc!r}"}
            sections["connect"] = f"KUBECONFIG={vc.kubeconfig_path} kubectl get pods -A"
            for title, text in sections.items():
                report.sections.append((f"vcluster {vc.name}: {title}", text))
    s = item.config.stash[SETTINGS]
    always = s.artifacts_when == "always" and report.when == "call"
    if s.artifacts is not None and (failed or always) and item.stash.get(ACTIVE, []):
        _write_artifacts(item, report, s.artifacts)
    return report


def _write_artifacts(item: pytest.Item, report: pytest.TestReport, root: Path) -> None:
    """A folder per test (``--vcluster-artifacts``), named in the report and the JUnit XML."""
    from . import artifacts

    folder = root / artifacts.folder_for(item.nodeid)
    for vc in item.stash.get(ACTIVE, []):
        try:
            artifacts.write(vc, folder / vc.name)
        except Exception as exc:  # never mask the test's own outcome
            report.sections.append((f"vcluster {vc.name}: artifacts", f"not written: {exc!r}"))
    # The JUnit XML writes the properties of the teardown report, made from the item's.
    item.user_properties.append(("vcluster_artifacts", str(folder)))
    report.sections.append(("vcluster artifacts", str(folder)))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from . import kept

    s = config.stash[SETTINGS]
    started = config.stash[_STARTED]
    records = [r for _, r in kept.load_all(s.cache_dir) if r.kept_at >= started]
    if records:
        terminalreporter.section("kept vclusters")
        for r in records:
            terminalreporter.write_line(f"{r.name}: KUBECONFIG={r.kubeconfig} kubectl get pods -A")
        terminalreporter.write_line("remove them with: pytest-vcluster reap")
