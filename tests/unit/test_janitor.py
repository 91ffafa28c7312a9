"""The in-cluster janitor's choice of namespaces (pytest_vcluster.janitor); against a real API
server in tests/integration/test_janitor_sweep.py."""

from __future__ import annotations

from typing import Any

from pytest_vcluster.janitor import expired


def ns(name: str, expires: str | None, phase: str = "Active") -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "pytest-vcluster"}
    if expires is not None:
        labels["pytest-vcluster.io/expires"] = expires
    return {"metadata": {"name": name, "labels": labels}, "status": {"phase": phase}}


def test_only_namespaces_past_their_expiry_and_not_going_are_chosen() -> None:
    now = 1_000_000.0
    spaces = [
        ns("old", "999999"),
        ns("due", "1000000"),
        ns("young", "1000001"),
        ns("no-expiry", None),  # not ours to age
        ns("garbled", "soon"),
        ns("leaving", "1", phase="Terminating"),
    ]
    assert expired(spaces, now) == ["due", "old"]
