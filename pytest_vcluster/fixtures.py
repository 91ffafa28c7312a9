"""Thin fixtures over ``SharedHost`` and ``VCluster``; the keep policy and kept records."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .config import Settings
from .errors import VClusterError
from .hosts.base import HostInfo
from .markers import MarkerArgs, parse_marker

if TYPE_CHECKING:
    from .vcluster import VCluster

SETTINGS = pytest.StashKey[Settings]()
ACTIVE = pytest.StashKey["list[VCluster]"]()  # vclusters a test uses, for failure diagnostics
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
RUN_LABEL = "pytest-vcluster.io/run-id"
EXPIRES_LABEL = "pytest-vcluster.io/expires"


class CleanupWarning(pytest.PytestWarning):
    """A vcluster could not be removed completely (shown in the warnings summary)."""


@dataclass
class Manager:
    """Creates vclusters for one pytest process and applies the keep policy at teardown."""

    settings: Settings
    host: HostInfo
    run_id: str
    progress: Callable[[str], None]
    kept: list[dict[str, Any]] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=itertools.count)
    _pool: deque[Future[VCluster]] = field(default_factory=deque)
    _executor: ThreadPoolExecutor | None = None
    # Deleted in-cluster vclusters whose host namespace the namespace controller still removes.
    _terminating: deque[VCluster] = field(default_factory=deque)

    def new_name(self) -> str:
        return f"vc{os.getpid()}-{next(self._counter)}"

    # A vcluster with default settings takes seconds to start, mostly kube-apiserver's own
    # start-up: keep ``prewarm`` of them starting in the background, hand one out on request.
    def prewarm(self) -> None:
        if self.settings.prewarm <= 0 or self.host.kind != "local":
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="vcluster-prewarm")
        while len(self._pool) < self.settings.prewarm:
            self._pool.append(self._executor.submit(self._build, MarkerArgs()))

    def _take_prewarmed(self) -> VCluster | None:
        while self._pool:
            future = self._pool.popleft()
            try:
                vc = future.result()
            except Exception as exc:  # fall back to a synchronous create, report why
                self.progress(f"pytest-vcluster: a prewarmed vcluster failed: {exc}")
                continue
            self.prewarm()
            self.progress(f"pytest-vcluster: vcluster {vc.name}: prewarmed, ready")
            return vc
        return None

    def close(self) -> None:
        """Delete the prewarmed vclusters nobody took; wait for the host namespaces that are
        still terminating (a warning names any that is not gone)."""
        while self._pool:
            future = self._pool.popleft()
            with contextlib.suppress(Exception):
                future.result().delete()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._terminating:
            self.progress(
                f"pytest-vcluster: waiting for {len(self._terminating)} host namespace(s) to go"
            )
        while self._terminating:
            vc = self._terminating.popleft()
            if not vc.wait_deleted():
                warnings.warn(
                    CleanupWarning(
                        f"vcluster {vc.name}: host namespace {vc.host_namespace} still exists"
                    ),
                    stacklevel=1,
                )

    def create(self, args: MarkerArgs | None = None, **overrides: Any) -> VCluster:
        args = args or MarkerArgs()
        if not overrides and args == MarkerArgs():
            vc = self._take_prewarmed()
            if vc is not None:
                return vc
        try:
            return self._build(args, **overrides)
        finally:
            self.prewarm()

    def _build(self, args: MarkerArgs, **overrides: Any) -> VCluster:
        name = overrides.get("name") or args.name or self.new_name()
        sync = tuple(overrides.get("sync") or args.sync)
        version = overrides.get("k8s_version") or args.k8s_version
        values = None
        if self.host.kind == "local":
            binaries = self._binaries_for(version)
        else:  # chart values: the --vcluster-values file, then the marker's
            from .binaries import BinaryResolver
            from .hosts.incluster import deep_merge

            values = deep_merge(self.settings.values, args.values)
            # Any kubeconfig host runs any vcluster version we have a control plane image of.
            if self.host.kind == "kubeconfig":
                version = version or str(self.settings.k8s)
            tools = BinaryResolver(
                self.settings.k8s, self.settings.cache_dir, progress=self.progress
            )
            binaries = {t: tools.resolve(t).path for t in ("helm", "kubectl")}
        from .vcluster import VCluster

        expires = int(time.time()) + 6 * 3600
        vc = VCluster(
            self.host,
            name,
            sync=sync,
            binaries=binaries,
            k8s_version=version,
            labels={RUN_LABEL: self.run_id, EXPIRES_LABEL: str(expires)},
            timeout=self.settings.timeout,
            progress=self.progress,
            detachable=self.settings.keep != "never",
            values=values,
            cache_dir=self.settings.cache_dir,
        )
        vc.create()
        return vc

    def _binaries_for(self, version: str | None) -> dict[str, Path]:
        if version is None:
            return {}
        from .binaries import BinaryResolver
        from .versions import parse_k8s_version

        k8s = parse_k8s_version(version)
        if str(k8s) == self.host.k8s_version:
            return {}
        resolver = BinaryResolver(k8s, self.settings.cache_dir, progress=self.progress)
        return {t: resolver.resolve(t).path for t in ("kube-apiserver", "kube-controller-manager")}

    def finish(self, vc: VCluster, failed: bool) -> None:
        keep = self.settings.keep == "always" or (self.settings.keep == "on-failure" and failed)
        if keep:
            record = vc.detach()
            record["kept_at"] = time.time()
            kept_dir = self.settings.cache_dir / "kept"
            kept_dir.mkdir(parents=True, exist_ok=True)
            (kept_dir / f"{vc.name}.json").write_text(json.dumps(record, indent=2))
            self.kept.append(record)
            return
        try:
            # The namespace controller removes a deleted namespace only after a fixed 5 s: wait
            # for that once, for all of them, at the end of the session (close()).
            vc.delete(wait=False)
            if self.host.kind != "local":
                self._terminating.append(vc)
        except Exception as exc:  # report, never hide the test's own outcome
            warnings.warn(
                CleanupWarning(f"vcluster {vc.name}: cleanup failed: {exc}"), stacklevel=1
            )


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(REPORTS, {})
    return any(r.failed for r in reports.values())


def _track(request: pytest.FixtureRequest, vc: VCluster) -> None:
    request.node.stash.setdefault(ACTIVE, []).append(vc)


def _untrack(request: pytest.FixtureRequest, vc: VCluster) -> None:
    active = request.node.stash.get(ACTIVE, [])
    if vc in active:
        active.remove(vc)


def _create(manager: Manager, args: MarkerArgs | None = None, **kw: Any) -> VCluster:
    try:
        return manager.create(args, **kw)
    except VClusterError as exc:
        pytest.fail(f"pytest-vcluster: vcluster not created: {exc}", pytrace=False)


@pytest.fixture
def vcluster(request: pytest.FixtureRequest, vcluster_manager: Manager) -> Iterator[VCluster]:
    """A fresh virtual cluster for this test (configure with ``@pytest.mark.vcluster``)."""
    vc = _create(vcluster_manager, parse_marker(request.node))
    _track(request, vc)
    try:
        yield vc
    finally:
        _untrack(request, vc)
        vcluster_manager.finish(vc, _failed(request))


@pytest.fixture(scope="session")
def vcluster_session(
    request: pytest.FixtureRequest, vcluster_manager: Manager
) -> Iterator[VCluster]:
    """One virtual cluster shared by the whole session (per xdist worker)."""
    vc = _create(vcluster_manager)
    try:
        yield vc
    finally:
        vcluster_manager.finish(vc, request.session.testsfailed > 0)


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
    request: pytest.FixtureRequest, vcluster_manager: Manager
) -> Iterator[Callable[..., VCluster]]:
    """Call it (``name=``, ``sync=``, ``k8s_version=``) for as many vclusters as the test needs."""
    made: list[VCluster] = []

    def make(**kw: Any) -> VCluster:
        vc = _create(vcluster_manager, **kw)
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
    """

    @pytest.fixture(scope=scope)  # type: ignore[call-overload,untyped-decorator]
    def _fixture(request: pytest.FixtureRequest, vcluster_manager: Manager) -> Iterator[VCluster]:
        vc = _create(vcluster_manager, **kw)
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
