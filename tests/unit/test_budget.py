"""A pooled vcluster's CPU budget (hosts/incluster/budget.py): the values it starts with, the
resize that lifts it, and lifting at any point of the start, from another thread."""

from __future__ import annotations

import threading

from pytest_vcluster.hosts.incluster.budget import (
    IDLE,
    UNLIMITED,
    CpuBudget,
    budget_values,
    lifted_resources,
    resize_patch,
)
from pytest_vcluster.values import chart_defaults


def test_values_limit_both_containers() -> None:
    assert budget_values("250m") == {
        "controlPlane": {"resources": {"limits": {"cpu": "250m"}}},
        "syncer": {"resources": {"limits": {"cpu": "250m"}}},
    }


def test_idle_values_request_the_least_cpu_and_limit_nothing() -> None:
    assert budget_values(IDLE) == {
        "controlPlane": {"resources": {"requests": {"cpu": "1m"}}},
        "syncer": {"resources": {"requests": {"cpu": "1m"}}},
    }


def test_lifted_limits_are_the_values_own_else_unlimited() -> None:
    values = {"controlPlane": {"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}}
    assert lifted_resources("250m", values, chart_defaults()) == {
        "control-plane": {"limits": "2"},
        "syncer": {"limits": UNLIMITED},
    }
    assert lifted_resources("250m", {}, {}) == {
        "control-plane": {"limits": UNLIMITED},
        "syncer": {"limits": UNLIMITED},
    }


def test_lifted_requests_are_the_values_own_else_the_charts() -> None:
    values = {"syncer": {"resources": {"requests": {"cpu": "200m"}}}}
    assert lifted_resources(IDLE, values, chart_defaults()) == {
        "control-plane": {"requests": "50m"},  # chart/values.yaml
        "syncer": {"requests": "200m"},
    }


def test_resize_patch_names_each_container() -> None:
    patch = resize_patch({"control-plane": {"requests": "50m"}, "syncer": {"limits": "1"}})
    assert patch == {
        "spec": {
            "containers": [
                {"name": "control-plane", "resources": {"requests": {"cpu": "50m"}}},
                {"name": "syncer", "resources": {"limits": {"cpu": "1"}}},
            ]
        }
    }


def test_lifted_before_the_pod_exists_resizes_when_it_does() -> None:
    resized: list[str] = []
    budget = CpuBudget("250m")
    assert budget.values() != {}
    assert budget.lift() is False  # no pod yet
    budget.pod_exists(lambda: resized.append("pod"))
    assert resized == ["pod"]


def test_lifted_before_the_install_starts_without_the_budget() -> None:
    budget = CpuBudget("250m")
    budget.lift()
    assert budget.values() == {}


def test_lifted_after_the_pod_exists_resizes_at_once_and_only_once() -> None:
    resized: list[str] = []
    budget = CpuBudget("250m")
    budget.pod_exists(lambda: resized.append("pod"))
    assert resized == []  # nobody took it yet: the budget holds
    assert budget.lift() is True
    assert budget.lift() is False
    assert resized == ["pod"]


def test_no_budget_never_resizes() -> None:
    resized: list[str] = []
    budget = CpuBudget(None)
    assert budget.values() == {}
    budget.pod_exists(lambda: resized.append("pod"))
    assert budget.lift() is False
    assert resized == []


def test_a_lift_racing_the_pod_resizes_exactly_once() -> None:
    for _ in range(200):
        resized: list[str] = []
        budget = CpuBudget("250m")
        go = threading.Barrier(2)

        def lift(b: CpuBudget = budget, go: threading.Barrier = go) -> None:
            go.wait()
            b.lift()

        t = threading.Thread(target=lift)
        t.start()
        go.wait()
        budget.pod_exists(lambda r=resized: r.append("pod"))
        t.join()
        assert resized == ["pod"]
