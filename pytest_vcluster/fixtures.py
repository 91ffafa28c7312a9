"""Thin fixtures over ``Manager`` (``manager.py``) and ``VCluster``: the pytest side only."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import VClusterError
from .markers import parse_marker
from .naming import EXPIRES_LABEL, RUN_LABEL
from .settings import Settings
from .spec import SpecError, VClusterSpec, build_spec
from .versions import K8sVersion, parse_k8s_version

if TYPE_CHECKING:
    from .manager import Manager
    from .vcluster import VCluster

__all__ = ["EXPIRES_LABEL", "RUN_LABEL", "CleanupWarning", "Manager", "vcluster_fixture"]

SETTINGS = pytest.StashKey[Settings]()
ACTIVE = pytest.StashKey["list[VCluster]"]()  # vclusters a test uses, for failure diagnostics
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
# vcluster_fixture() declarations: their spec (checked against the host at collection) or why
# they have none (a usage error at collection).
DECLARED: list[tuple[str, VClusterSpec | SpecError]] = []


def __getattr__(name: str) -> Any:
    if name == "Manager":  # it lived here; the import waits until a vcluster is needed
        from .manager import Manager

        return Manager
    raise AttributeError(name)


class CleanupWarning(pytest.PytestWarning):
    """A vcluster could not be removed completely (shown in the warnings summary)."""


def warn_cleanup(message: str) -> None:
    warnings.warn(CleanupWarning(message), stacklevel=2)


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(REPORTS, {})
    return any(r.failed for r in reports.values())


def _track(request: pytest.FixtureRequest, vc: VCluster) -> None:
    request.node.stash.setdefault(ACTIVE, []).append(vc)


def _untrack(request: pytest.FixtureRequest, vc: VCluster) -> None:
    active = request.node.stash.get(ACTIVE, [])
    if vc in active:
        active.remove(vc)


def _create(manager: Manager, spec: VClusterSpec | None = None) -> VCluster:
    from .errors import BinaryNotFoundError

    try:
        return manager.create(spec)
    except BinaryNotFoundError as exc:
        version = spec.k8s_version if spec else None
        if version is not None and manager.settings.missing_version == "skip":
            pytest.skip(f"pytest-vcluster: Kubernetes {version} not obtainable: {exc}")
        pytest.fail(f"pytest-vcluster: vcluster not created: {exc}", pytrace=False)
    except VClusterError as exc:
        pytest.fail(f"pytest-vcluster: vcluster not created: {exc}", pytrace=False)


def in_cell(spec: VClusterSpec, cell: str | None, host_version: K8sVersion) -> VClusterSpec:
    """The spec for a version-matrix cell (``cell``: its version; None outside a matrix). An
    explicit ``k8s_version`` of the spec wins; the host's own version stays the default (so a
    prewarmed vcluster serves it)."""
    if cell is None or spec.k8s_version is not None:
        return spec
    version = parse_k8s_version(cell)
    if version.minor_str == host_version.minor_str and not version.exact:
        return spec
    return dataclasses.replace(spec, k8s_version=version)


@pytest.fixture(scope="session")
def vcluster_k8s_version(request: pytest.FixtureRequest) -> str | None:
    """The Kubernetes version of this test's cell of a version matrix
    (``@pytest.mark.vcluster(k8s_version=[...])`` or ``--vcluster-k8s-version=A,B``), None
    outside one; the vcluster fixtures follow it."""
    return getattr(request, "param", None)


@pytest.fixture
def vcluster(
    request: pytest.FixtureRequest, vcluster_manager: Manager, vcluster_k8s_version: str | None
) -> Iterator[VCluster]:
    """A fresh virtual cluster for this test (configure with ``@pytest.mark.vcluster``)."""
    spec = in_cell(parse_marker(request.node), vcluster_k8s_version, vcluster_manager.settings.k8s)
    vc = _create(vcluster_manager, spec)
    _track(request, vc)
    try:
        yield vc
    finally:
        _untrack(request, vc)
        vcluster_manager.finish(vc, _failed(request))


@pytest.fixture(scope="session")
def vcluster_session(
    request: pytest.FixtureRequest, vcluster_manager: Manager, vcluster_k8s_version: str | None
) -> Iterator[VCluster]:
    """One virtual cluster shared by the whole session (per xdist worker; in a version matrix,
    one per version)."""
    spec = in_cell(VClusterSpec(), vcluster_k8s_version, vcluster_manager.settings.k8s)
    vc = _create(vcluster_manager, spec)
    try:
        if any("vcluster_clean" in getattr(i, "fixturenames", ()) for i in request.session.items):
            _or_fail(vc.snapshot)  # what vcluster_clean returns it to: the state it was ready in
        yield vc
    finally:
        vcluster_manager.finish(vc, request.session.testsfailed > 0)


@pytest.fixture
def vcluster_clean(vcluster_session: VCluster) -> VCluster:
    """The session's shared vcluster, returned first to the state it was ready in: whatever
    earlier tests made (namespaces, cluster-scoped objects, CRDs, webhooks, RBAC) is gone,
    in the vcluster and on the host, and what they changed is undone (``VCluster.reset()``).
    A fresh cluster for each test at the price of a reset (tens of milliseconds)."""
    _or_fail(vcluster_session.reset)
    return vcluster_session


def _or_fail(ask: Callable[[], object]) -> None:
    """A snapshot or reset; its ``ResetError`` fails the test with the syncer's reason."""
    from .reset import ResetError

    try:
        ask()
    except ResetError as exc:
        pytest.fail(f"pytest-vcluster: {exc}", pytrace=False)


@pytest.fixture
def vcluster_namespace(request: pytest.FixtureRequest, vcluster_session: VCluster) -> Iterator[str]:
    """A fresh namespace in the session's shared vcluster, deleted after the test: the cheap
    isolation for suites whose tests only touch namespaced objects."""
    from kubernetes import client

    # Readable and unique: the test's name, then a counter (xdist workers share nothing).
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")
    name = f"{base[:50].rstrip('-') or 'test'}-{next(_namespaces)}"
    core = client.CoreV1Api(vcluster_session.api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):  # the test may have deleted it itself
            core.delete_namespace(name, propagation_policy="Background")


_namespaces = itertools.count()


@pytest.fixture
def vcluster_factory(
    request: pytest.FixtureRequest, vcluster_manager: Manager, vcluster_k8s_version: str | None
) -> Iterator[Callable[..., VCluster]]:
    """Call it (``name=``, ``sync=``, ``k8s_version=``, ``values=``: the marker's arguments)
    for as many vclusters as the test needs; wrong arguments raise ``SpecError``."""
    made: list[VCluster] = []
    host = vcluster_manager.host

    def make(**kw: Any) -> VCluster:
        from .spec import check_supported

        spec = build_spec(kw, "vcluster_factory")
        check_supported(spec, host.kind, host.provides, "vcluster_factory")
        spec = in_cell(spec, vcluster_k8s_version, vcluster_manager.settings.k8s)
        vc = _create(vcluster_manager, spec)
        made.append(vc)
        _track(request, vc)
        return vc

    try:
        yield make
    finally:
        failed = _failed(request)
        for vc in reversed(made):
            _untrack(request, vc)
            vcluster_manager.finish(vc, failed)


def vcluster_fixture(scope: str = "function", **kw: Any) -> Any:
    """Declare a named vcluster fixture in a conftest, at any scope::

    shared_cluster = vcluster_fixture(scope="module", sync=["ingresses"])

    Its arguments are the marker's, checked here (a usage error) and against the host at
    collection.
    """
    caller = inspect.stack(context=0)[1]
    where = f"{Path(caller.filename).name}:{caller.lineno}: vcluster_fixture"
    try:
        spec = build_spec(kw, where)
    except SpecError as exc:  # one usage error at collection, like a marker's
        DECLARED.append((where, exc))
        spec = VClusterSpec()
    else:
        DECLARED.append((where, spec))

    @pytest.fixture(scope=scope)  # type: ignore[call-overload,untyped-decorator]
    def _fixture(
        request: pytest.FixtureRequest, vcluster_manager: Manager, vcluster_k8s_version: str | None
    ) -> Iterator[VCluster]:
        cell = in_cell(spec, vcluster_k8s_version, vcluster_manager.settings.k8s)
        vc = _create(vcluster_manager, cell)
        try:
            yield vc
        finally:
            vcluster_manager.finish(vc, request.session.testsfailed > 0)

    return _fixture


def run_id(config: pytest.Config) -> str:
    workerinput = getattr(config, "workerinput", None)
    if workerinput and "testrunuid" in workerinput:
        return str(workerinput["testrunuid"])[:16]
    return uuid.uuid4().hex[:16]
