"""The Manager (pytest-free): what a host provides decides the waits; cleanup is reported."""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from pytest_vcluster.errors import CleanupError
from pytest_vcluster.fixtures import CleanupWarning, warn_cleanup
from pytest_vcluster.hosts.base import Provides
from pytest_vcluster.idle import IdleGate
from pytest_vcluster.manager import Manager, Pooled
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

    def create(self) -> FakeVCluster:
        self.calls.append("create")
        return self

    def lift_cpu_budget(self) -> None:
        self.calls.append("lift_cpu_budget")


class FakeHost:
    kind = "fake"

    def __init__(self, deferred: bool, default_prewarm: int = 0) -> None:
        self.provides = Provides(
            tools=(),
            chart_values=deferred,
            default_prewarm=default_prewarm,
            deferred_namespace_wait=deferred,
        )


def manager(
    deferred: bool, tmp_path: Path, prewarm: int | None = None, default_prewarm: int = 0
) -> Manager:
    settings = Settings(
        host="x", k8s=parse_k8s_version(None), cache_dir=tmp_path, timeout=1, prewarm=prewarm
    )
    host: Any = FakeHost(deferred, default_prewarm)
    m = Manager(settings, host, "r", lambda msg: None, warn=warn_cleanup)
    m.idle_gate = IdleGate(read=lambda: None)  # no CPU times: pooled starts begin at once
    return m


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
    m._pool.extend(
        [
            Pooled(FakeVCluster("x"), failed, threading.Event()),  # type: ignore[arg-type]
            Pooled(done.result(), done, threading.Event()),
        ]
    )
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


@pytest.mark.parametrize(
    ("asked", "default", "size"), [(None, 1, 1), (None, 0, 0), (2, 0, 2), (0, 1, 0)]
)
def test_the_pool_is_the_option_else_the_hosts_default(
    tmp_path: Path, asked: int | None, default: int, size: int
) -> None:
    assert manager(True, tmp_path, asked, default).pool_size == size


@pytest.mark.parametrize(("chart", "budget"), [(True, "idle"), (False, None)])
def test_pooled_vclusters_start_under_the_budget_on_chart_hosts_and_are_lifted_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chart: bool, budget: str | None
) -> None:
    m = manager(chart, tmp_path, prewarm=1)
    made: list[tuple[str, str | None]] = []
    vcs: list[FakeVCluster] = []

    def handle(spec: Any, cpu_budget: str | None = None) -> FakeVCluster:
        made.append((spec.name or "", cpu_budget))
        vcs.append(FakeVCluster(f"p{len(vcs)}"))
        return vcs[-1]

    monkeypatch.setattr(m, "_handle", handle)
    m.prewarm()
    assert made == [("", budget)]
    taken = m.create()
    # Lifted before waiting for its start; the next one is already on its way.
    assert taken is vcs[0]  # type: ignore[comparison-overlap]
    assert vcs[0].calls == ["create", "lift_cpu_budget"] or vcs[0].calls == [
        "lift_cpu_budget",
        "create",
    ]
    assert made == [("", budget), ("", budget)]
    assert m._pool[0].started.result() is vcs[1]
    m.close()
    assert vcs[1].calls == ["create", "delete(wait=True)"]
    assert "lift_cpu_budget" not in vcs[1].calls


def test_a_marker_with_another_spec_never_gets_a_pooled_vcluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_vcluster.spec import VClusterSpec

    m = manager(True, tmp_path, prewarm=1)
    specs: list[Any] = []

    def handle(spec: Any, cpu_budget: str | None = None) -> FakeVCluster:
        specs.append((spec, cpu_budget))
        return FakeVCluster(spec.name or f"pool{len(specs)}")

    monkeypatch.setattr(m, "_handle", handle)
    m.prewarm()
    own = m.create(VClusterSpec(values={"coredns": {"enabled": False}}))
    assert own.name != "pool1"
    assert specs[1][0].values == {"coredns": {"enabled": False}}
    assert specs[1][1] is None  # its own start is not budgeted
    assert len(m._pool) == 1  # the pooled one waits for a test of the default spec
    m.close()


def test_a_pooled_start_waits_for_an_idle_machine_unless_a_test_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the idle budget the next start waits (here: a machine busy for good, so until
    max_wait); a test asking for the pooled vcluster starts it at once."""
    m = manager(True, tmp_path, prewarm=1)
    busy = iter(range(0, 10**9, 100))
    m.idle_gate = IdleGate(window=0.01, max_wait=30, read=lambda: (next(busy), next(busy)))
    said: list[str] = []
    m.progress = said.append
    vcs: list[FakeVCluster] = []

    def handle(spec: Any, cpu_budget: str | None = None) -> FakeVCluster:
        vcs.append(FakeVCluster(f"p{len(vcs)}"))
        return vcs[-1]

    monkeypatch.setattr(m, "_handle", handle)
    m.prewarm()
    assert not m._pool[0].started.done()
    assert vcs[0].calls == []  # still waiting for the machine
    assert m.create() is vcs[0]  # type: ignore[comparison-overlap]
    assert "create" in vcs[0].calls
    assert any(msg.endswith("(asked)") for msg in said), said
    # The session ends while the next one waits: it is never created, nothing to delete.
    m.close()
    assert vcs[1].calls == []


def test_a_quantity_budget_starts_the_pool_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        host="x", k8s=parse_k8s_version(None), cache_dir=tmp_path, timeout=1, prewarm=1,
        prewarm_cpu="250m",
    )  # fmt: skip
    m = Manager(settings, FakeHost(True), "r", lambda msg: None)  # type: ignore[arg-type]
    m.idle_gate = IdleGate(read=lambda: (0, 0), max_wait=60)  # would wait a minute
    vc = FakeVCluster("q")
    monkeypatch.setattr(m, "_handle", lambda spec, cpu_budget=None: vc)
    m.prewarm()
    assert m._pool[0].started.result(timeout=5) is vc  # type: ignore[comparison-overlap]
    m.close()
