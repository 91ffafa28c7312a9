"""``@pytest.mark.vcluster(...)``: validated once at collection, before any cluster exists."""

from __future__ import annotations

import inspect

import pytest

from syncer.settings import RESOURCES

from .spec import SpecError, VClusterSpec, build_spec, vcluster

SYNCABLE = tuple(RESOURCES)  # one list: the syncer's

MARKER_LINE = (
    f"vcluster{inspect.signature(vcluster)}: configure the test's virtual cluster "
    f"(k8s_version like '1.36'; values: chart values dict; sync: resources to turn on, or "
    f"off with a leading '-' (all on by default), of {', '.join(SYNCABLE)}; "
    "name: the vcluster's name)"
)


def marker_where(item: pytest.Item) -> str:
    return f"{item.nodeid}: @pytest.mark.vcluster"


def parse_marker(item: pytest.Item) -> VClusterSpec:
    """The spec of the test's closest ``vcluster`` marker (the default spec without one)."""
    mark = item.get_closest_marker("vcluster")
    if mark is None:
        return VClusterSpec()
    where = marker_where(item)
    if mark.args:
        raise pytest.UsageError(f"{where} takes keyword arguments only, got {mark.args!r}")
    try:
        return build_spec(mark.kwargs, where)
    except SpecError as exc:
        raise pytest.UsageError(str(exc)) from None
