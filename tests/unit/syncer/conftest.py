"""Shared helpers for the syncer translation tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

Matcher = Callable[[Mapping[str, Any] | None, Mapping[str, str]], bool]


def _expression(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = expr["key"], expr["operator"], expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise AssertionError(f"unknown operator {op}")


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics: nil matches nothing, empty matches everything."""
    if selector is None:
        return False
    match_labels = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    return all(_expression(e, labels) for e in selector.get("matchExpressions") or [])


@pytest.fixture
def matches() -> Matcher:
    """An independent LabelSelector evaluator, to check what translated selectors select."""
    return selector_matches
