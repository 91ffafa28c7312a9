"""What a vcluster should be, checked once: ``VClusterSpec``.

The marker, ``vcluster_factory(**kw)``, ``vcluster_fixture(**kw)`` and ``VCluster(...)`` all
build their spec with ``build_spec``, so an unknown keyword, a value the chart's schema refuses
or one the host cannot honour is the same error wherever it comes from (the plugin turns it
into a usage error where it can: options, markers and fixture declarations are read before
any cluster exists).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import VClusterError
from .naming import validate_name
from .versions import K8sVersion, parse_k8s_version

if TYPE_CHECKING:
    from .hosts.base import Provides


class SpecError(VClusterError):
    """A vcluster was asked for with arguments that cannot work; the message names which."""


def vcluster(
    k8s_version: str | list[str] | None = None,
    values: dict[str, Any] | None = None,
    sync: list[str] | None = None,
    name: str | None = None,
) -> None:
    """Configure the ``vcluster`` fixture of this test (the signature shown by --markers)."""


ARGUMENTS = tuple(inspect.signature(vcluster).parameters)


@dataclass(frozen=True)
class VClusterSpec:
    """``None``/empty means the default: a generated name, the host's Kubernetes version, the
    chart's values, every resource synced."""

    name: str | None = None
    k8s_version: K8sVersion | None = None
    values: Mapping[str, Any] = field(default_factory=dict, hash=False)
    sync: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return self == VClusterSpec()

    def named(self, name: str) -> VClusterSpec:
        return dataclasses.replace(self, name=validate_name(name))

    def over(self, values: Mapping[str, Any]) -> VClusterSpec:
        """This spec with ``values`` under its own (``--vcluster-values``, then the spec's)."""
        if not values:
            return self
        from .values import deep_merge

        return dataclasses.replace(self, values=deep_merge(values, self.values))

    def syncer_args(self) -> tuple[str, ...]:
        """The syncer's ``--sync``-style flags for ``sync`` (validated by ``build_spec``)."""
        from syncer.settings import sync_flags

        return sync_flags(self.sync)


def build_spec(kwargs: Mapping[str, Any], where: str) -> VClusterSpec:
    """The spec of ``kwargs`` (the marker's arguments); ``SpecError`` prefixed by ``where``
    (``test_x.py::test: @pytest.mark.vcluster``, ``vcluster_factory``) when one is wrong."""
    try:
        bound = inspect.signature(vcluster).bind(**kwargs)
    except TypeError as exc:
        raise SpecError(f"{where}: {exc}; accepted arguments: {', '.join(ARGUMENTS)}") from None
    kw = bound.arguments
    return VClusterSpec(
        name=_name(kw.get("name"), where),
        k8s_version=_version(kw.get("k8s_version"), where),
        values=_values(kw.get("values"), where),
        sync=_sync(kw.get("sync"), where),
    )


def check_supported(spec: VClusterSpec, host: str, provides: Provides, where: str) -> None:
    """A ``SpecError`` for what ``host`` cannot honour (it would otherwise be ignored)."""
    if spec.values and not provides.chart_values:
        raise SpecError(
            f"{where}(values=...): the {host} host runs vclusters as processes, not as the Helm "
            "chart, so chart values cannot apply; use sync= for resources, or a kind or "
            "kubeconfig host (--vcluster-host) for the chart"
        )


def _name(name: Any, where: str) -> str | None:
    if name is None:
        return None
    try:
        return validate_name(str(name))
    except VClusterError as exc:
        raise SpecError(f"{where}(name={name!r}): {exc}") from None


def _version(version: Any, where: str) -> K8sVersion | None:
    if version is None or isinstance(version, K8sVersion):
        return version
    if isinstance(version, (list, tuple)):
        raise SpecError(
            f"{where}(k8s_version={version!r}): one version here; a list of versions "
            "(a matrix) is for @pytest.mark.vcluster and --vcluster-k8s-version"
        )
    try:
        return parse_k8s_version(str(version))
    except VClusterError as exc:
        raise SpecError(f"{where}(k8s_version={version!r}): {exc}") from None


def _values(values: Any, where: str) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise SpecError(
            f"{where}(values={values!r}): must be a dict of chart values, "
            f"not {type(values).__name__}"
        )
    if not values:
        return {}
    from .values import schema_errors

    errors = schema_errors(values)
    if errors:
        raise SpecError(
            f"{where}(values=...): fails the chart's values.schema.json: {'; '.join(errors[:5])}"
        )
    from .values import deep_merge

    return deep_merge({}, values)  # a copy: the caller's dict may change later


def _sync(sync: Any, where: str) -> tuple[str, ...]:
    if sync is None:
        return ()
    if not isinstance(sync, (list, tuple)) or not all(isinstance(s, str) for s in sync):
        raise SpecError(f"{where}(sync={sync!r}): must be a list of resource names")
    from syncer.settings import parse_sync

    try:
        parse_sync(sync)
    except ValueError as exc:
        raise SpecError(f"{where}(sync={sync!r}): {exc}") from None
    return tuple(sync)
