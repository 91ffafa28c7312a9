"""The Manager (pytest-free): what a host provides decides the waits; cleanup is reported."""

from __future__ import annotations

import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from pytest_vcluster.errors import CleanupError
from pytest_vcluster.fixtures import CleanupWarning, warn_cleanup
from pytest_vcluster.hosts.base import Provides
from pytest_vcluster.manager import Manager
from pytest_vcluster.settings import Settings
from pytest_vcluster.versions import parse_k8s_version


class FakeVCluster:
    def __init__(self, name: str, gone: bool = True, broken: bool = False) -> None:
        self.name = name
        self.host_namespace = f"vcluster-{name}"
        self.gone = gone
        self.broken = broken
        self.calls: list[str] = []

    def delete(self, wait: bool = True) -> None:
        self.calls.append(f"delete(wait={wait})")
        if self.broken:
            raise CleanupError(f"vcluster {self.name}: not removed: its objects")

    def wait_deleted(self, timeout: float = 120) -> bool:
        self.calls.append("wait_deleted")
        return self.gone


class FakeHost:
    kind = "fake"

    def __init__(self, deferred: bool) -> None:
        self.provides = Provides(
            tools=(), chart_values=deferred, prewarm=False, deferred_namespace_wait=deferred
        )


def manager(deferred: bool, tmp_path: Path) -> Manager:
    settings = Settings(host="x", k8s=parse_k8s_version(None), cache_dir=tmp_path, timeout=1)
    host: Any = FakeHost(deferred)
    return Manager(settings, host, "r", lambda msg: None, warn=warn_cleanup)


def test_in_cluster_teardown_defers_the_namespace_wait_to_the_end(tmp_path: Path) -> None:
    m = manager(True, tmp_path)
    a, b = FakeVCluster("a"), FakeVCluster("b", gone=False)
    m.finish(a, failed=False)  # type: ignore[arg-type]
    m.finish(b, failed=False)  # type: ignore[arg-type]
    # Each test's teardown returned without waiting for its namespace.
    assert a.calls == b.calls == ["delete(wait=False)"]
    with pytest.warns(CleanupWarning, match="vcluster-b still exists"):
        m.close()
    assert a.calls == b.calls == ["delete(wait=False)", "wait_deleted"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.close()  # nothing left to wait for
    assert a.calls[-1] == "wait_deleted"
    assert len(a.calls) == 2


def test_local_vclusters_have_no_namespace_to_wait_for(tmp_path: Path) -> None:
    m = manager(False, tmp_path)
    vc = FakeVCluster("a")
    m.finish(vc, failed=False)  # type: ignore[arg-type]
    m.close()
    assert vc.calls == ["delete(wait=False)"]


def test_a_teardown_that_fails_is_a_cleanup_warning(tmp_path: Path) -> None:
    m = manager(False, tmp_path)
    with pytest.warns(CleanupWarning, match="vcluster a: cleanup failed: .*not removed"):
        m.finish(FakeVCluster("a", broken=True), failed=False)  # type: ignore[arg-type]


def test_an_unused_prewarmed_vcluster_that_cannot_be_deleted_is_reported(
    tmp_path: Path,
) -> None:
    """Before: ``suppress(Exception)`` around its delete hid the failure."""
    m = manager(False, tmp_path)
    done: Future[Any] = Future()
    done.set_result(FakeVCluster("warm", broken=True))
    failed: Future[Any] = Future()
    failed.set_exception(RuntimeError("never started"))
    m._pool.extend([failed, done])
    said: list[str] = []
    m.progress = said.append
    with pytest.warns(CleanupWarning, match=r"vcluster warm \(prewarmed, unused\): cleanup failed"):
        m.close()
    assert said == ["pytest-vcluster: a prewarmed vcluster failed: never started"]
    assert not m._pool


class RecordingHost(FakeHost):
    """A chart host that records what it was asked to make."""

    k8s_version = "1.37.2"

    def __init__(self) -> None:
        super().__init__(deferred=True)
        self.specs: list[Any] = []

    def tools(self) -> Any:
        from pytest_vcluster.hosts.tools import Tools

        return Tools({}, parse_k8s_version(None))

    def new_vcluster(self, spec: Any, options: Any) -> Any:
        self.specs.append((spec, options))
        runtime = FakeVCluster(spec.name)
        runtime.start = lambda: None  # type: ignore[attr-defined]
        return runtime


def test_values_reach_the_host_over_the_options_values(tmp_path: Path) -> None:
    """Before: the factory's and vcluster_fixture's values= were dropped on the way."""
    from pytest_vcluster.spec import build_spec

    settings = Settings(
        host="x",
        k8s=parse_k8s_version(None),
        cache_dir=tmp_path,
        timeout=1,
        values={"syncer": {"workers": 2}, "labels": {"team": "a"}},
    )
    host = RecordingHost()
    m = Manager(settings, host, "run1", lambda msg: None)  # type: ignore[arg-type]
    vc = m.create(build_spec({"values": {"syncer": {"workers": 4}}, "name": "v"}, "test"))
    spec, options = host.specs[0]
    assert (vc.name, spec.name) == ("v", "v")
    assert spec.values == {"syncer": {"workers": 4}, "labels": {"team": "a"}}
    assert options.labels["pytest-vcluster.io/run-id"] == "run1"
    assert not options.detachable  # keep=never
    assert options.node_port  # --vcluster-access=auto
    m.create()  # a default spec gets a generated name
    assert host.specs[1][0].name.startswith("vc")
