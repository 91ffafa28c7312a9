"""Shared helpers for the syncer translation tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from syncer.translate.selectors import selects

Matcher = Callable[[Mapping[str, Any] | None, Mapping[str, str]], bool]


@pytest.fixture
def matches() -> Matcher:
    """A LabelSelector evaluator (table-tested in test_syncer_trust_bundles.py), to check
    what translated selectors select."""
    return selects
