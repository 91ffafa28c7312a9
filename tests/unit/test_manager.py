"""The fixtures' Manager: in-cluster namespaces are waited for once, at the end of the session."""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_vcluster.fixtures import CleanupWarning, Manager


class FakeVCluster:
    def __init__(self, name: str, gone: bool = True) -> None:
        self.name = name
        self.host_namespace = f"vcluster-{name}"
        self.gone = gone
        self.calls: list[str] = []

    def delete(self, wait: bool = True) -> None:
        self.calls.append(f"delete(wait={wait})")

    def wait_deleted(self, timeout: float = 120) -> bool:
        self.calls.append("wait_deleted")
        return self.gone


def manager(host_kind: str) -> Manager:
    settings: Any = SimpleNamespace(keep="never", prewarm=0)
    host: Any = SimpleNamespace(kind=host_kind)
    return Manager(settings=settings, host=host, run_id="r", progress=lambda msg: None)


def test_in_cluster_teardown_defers_the_namespace_wait_to_the_end() -> None:
    m = manager("kind")
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


def test_local_vclusters_have_no_namespace_to_wait_for() -> None:
    m = manager("local")
    vc = FakeVCluster("a")
    m.finish(vc, failed=False)  # type: ignore[arg-type]
    m.close()
    assert vc.calls == ["delete(wait=False)"]
