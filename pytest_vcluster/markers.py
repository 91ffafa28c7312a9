"""``@pytest.mark.vcluster(...)``: validated once at collection, before any cluster exists."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest

from syncer.settings import RESOURCES, parse_sync

from .errors import VClusterError
from .naming import validate_name
from .versions import parse_k8s_version

SYNCABLE = tuple(RESOURCES)  # one list: the syncer's


def vcluster(
    k8s_version: str | None = None,
    values: dict[str, Any] | None = None,
    sync: list[str] | None = None,
    name: str | None = None,
) -> None:
    """Configure the ``vcluster`` fixture of this test (the signature shown by --markers)."""


MARKER_LINE = (
    f"vcluster{inspect.signature(vcluster)}: configure the test's virtual cluster "
    f"(k8s_version like '1.36'; values: chart values dict; sync: resources to turn on, or "
    f"off with a leading '-' (all on by default), of {', '.join(SYNCABLE)}; "
    "name: the vcluster's name)"
)


@dataclass(frozen=True)
class MarkerArgs:
    k8s_version: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    sync: tuple[str, ...] = ()
    name: str | None = None


def parse_marker(item: pytest.Item) -> MarkerArgs:
    mark = item.get_closest_marker("vcluster")
    if mark is None:
        return MarkerArgs()
    where = f"{item.nodeid}: @pytest.mark.vcluster"
    if mark.args:
        raise pytest.UsageError(f"{where} takes keyword arguments only, got {mark.args!r}")
    try:
        bound = inspect.signature(vcluster).bind(**mark.kwargs)
    except TypeError as exc:
        accepted = ", ".join(inspect.signature(vcluster).parameters)
        raise pytest.UsageError(f"{where}: {exc}; accepted arguments: {accepted}") from None
    kw = bound.arguments
    version = kw.get("k8s_version")
    if version is not None:
        try:
            parse_k8s_version(str(version))
        except VClusterError as exc:
            raise pytest.UsageError(f"{where}(k8s_version={version!r}): {exc}") from None
    values = kw.get("values") or {}
    if not isinstance(values, dict):
        raise pytest.UsageError(
            f"{where}(values={values!r}): must be a dict of chart values, "
            f"not {type(values).__name__}"
        )
    from .values import schema_errors

    errors = schema_errors(values) if values else []
    if errors:
        raise pytest.UsageError(
            f"{where}(values=...): fails the chart's values.schema.json: {'; '.join(errors[:5])}"
        )
    sync = kw.get("sync") or []
    if isinstance(sync, str) or not all(isinstance(s, str) for s in sync):
        raise pytest.UsageError(f"{where}(sync={sync!r}): must be a list of resource names")
    try:
        parse_sync(sync)
    except ValueError as exc:
        raise pytest.UsageError(f"{where}(sync={sync!r}): {exc}") from None
    name = kw.get("name")
    if name is not None:
        try:
            validate_name(str(name))
        except VClusterError as exc:
            raise pytest.UsageError(f"{where}(name={name!r}): {exc}") from None
    return MarkerArgs(
        str(version) if version else None, dict(values), tuple(sync), str(name) if name else None
    )
