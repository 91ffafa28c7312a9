"""``@pytest.mark.vcluster(...)``: validated once at collection, before any cluster exists."""

from __future__ import annotations

import inspect

import pytest

from syncer.settings import RESOURCES

from .spec import SpecError, VClusterSpec, build_spec, vcluster
from .versions import K8sVersion

SYNCABLE = tuple(RESOURCES)  # one list: the syncer's

MARKER_LINE = (
    f"vcluster{inspect.signature(vcluster)}: configure the test's virtual cluster "
    "(k8s_version like '1.36', or a list of them: the test runs once per version; "
    f"values: chart values dict; sync: resources to turn on, or "
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
    kwargs = dict(mark.kwargs)
    if isinstance(kwargs.get("k8s_version"), (list, tuple)):
        marker_versions(item)  # checked here too; each cell's version comes from its parameter
        del kwargs["k8s_version"]
    try:
        return build_spec(kwargs, where)
    except SpecError as exc:
        raise pytest.UsageError(str(exc)) from None


def marker_versions(item: pytest.Item) -> tuple[K8sVersion, ...]:
    """The versions of a matrix marker (``k8s_version=["1.35", "1.37"]``); () otherwise."""
    mark = item.get_closest_marker("vcluster")
    listed = mark.kwargs.get("k8s_version") if mark is not None else None
    if not isinstance(listed, (list, tuple)):
        return ()
    where = marker_where(item)
    if not listed:
        raise pytest.UsageError(f"{where}(k8s_version=[]): an empty list; name one or more")
    versions: list[K8sVersion] = []
    for v in listed:
        try:
            spec = build_spec({"k8s_version": v}, where)
        except SpecError as exc:
            raise pytest.UsageError(str(exc)) from None
        assert spec.k8s_version is not None
        versions.append(spec.k8s_version)
    if len({v.minor_str for v in versions}) != len(versions):
        raise pytest.UsageError(f"{where}(k8s_version={listed!r}): a minor version twice")
    return tuple(versions)


def cell_label(version: K8sVersion) -> str:
    """``1.35`` (or ``1.35.1`` when the patch was named): the parameter and the id's part."""
    return str(version) if version.exact else version.minor_str
