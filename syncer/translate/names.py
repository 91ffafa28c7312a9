"""Host names, label keys and selectors for virtual objects.

All virtual objects of one virtual cluster share one host namespace, so names carry the virtual
namespace and the virtual cluster, and virtual labels move under LABEL_PREFIX where they can
neither collide with host labels nor with the syncer's own bookkeeping labels.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..constants import LABEL_PREFIX, MANAGED_BY_LABEL, NAMESPACE_LABEL

MAX_NAME = 63
_HASH_NAME = 10
_KEEP_NAME = MAX_NAME - _HASH_NAME - 1
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
_OWNED = LABEL_PREFIX + "/"
# Parts of the syncer's own labels: a virtual key "namespace" must not become NAMESPACE_LABEL.
_RESERVED_PARTS = frozenset(k.removeprefix(_OWNED) for k in (MANAGED_BY_LABEL, NAMESPACE_LABEL))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _fit(full: str) -> str:
    if len(full) <= MAX_NAME:
        return full
    # Pad back with '-' after stripping so the result stays 63 long and no label of a DNS
    # subdomain ends in '.' or '-.' next to the hash; the hash of the full name keeps it unique.
    prefix = full[:_KEEP_NAME].rstrip(".-").ljust(_KEEP_NAME, "-")
    return f"{prefix}-{_sha256(full)[:_HASH_NAME]}"


def host_name(name: str, namespace: str, vcluster: str) -> str:
    """Host name of a namespaced virtual object: ``name-x-namespace-x-vcluster``, at most 63."""
    return _fit(f"{name}-x-{namespace}-x-{vcluster}")


def host_name_for_cluster_scoped(name: str, vcluster: str) -> str:
    """Host name of a cluster-scoped virtual object: ``name-x-vcluster``, at most 63."""
    return _fit(f"{name}-x-{vcluster}")


def translate_label_key(key: str) -> str:
    """Host key of a virtual label key, always under LABEL_PREFIX; injective in practice."""
    prefix, slash, rest = key.partition("/")
    part = f"{prefix}_{rest}" if slash else key
    # An unprefixed key holding '_' could equal the image of "prefix/name", so it is hashed.
    readable = (
        len(part) <= MAX_NAME
        and _LABEL_NAME_RE.match(part) is not None
        and part not in _RESERVED_PARTS
        and (slash == "/" or "_" not in key)
    )
    return _OWNED + (part if readable else "h-" + _sha256(key)[:20])


def _is_owned(key: str) -> bool:
    return key.startswith(_OWNED)


def translate_labels(
    labels: Mapping[str, str] | None, virtual_namespace: str, vcluster: str
) -> dict[str, str]:
    """Host labels: translated virtual labels plus the namespace and managed-by labels."""
    out = {translate_label_key(k): v for k, v in (labels or {}).items() if not _is_owned(k)}
    out[NAMESPACE_LABEL] = virtual_namespace
    out[MANAGED_BY_LABEL] = vcluster
    return out


def translate_selector(
    match_labels: Mapping[str, str] | None, virtual_namespace: str
) -> dict[str, str]:
    """Host matchLabels (or Service selector) restricted to the virtual namespace."""
    # Keys under LABEL_PREFIX are translated, not dropped: they never reach host pods, so the
    # selector stays narrow (matches nothing) instead of silently widening.
    out = {translate_label_key(k): v for k, v in (match_labels or {}).items()}
    out[NAMESPACE_LABEL] = virtual_namespace
    return out


def _translate_keys(selector: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "matchLabels": {
            translate_label_key(k): v for k, v in (selector.get("matchLabels") or {}).items()
        }
    }
    expressions = [
        {**expr, "key": translate_label_key(expr["key"])}
        for expr in selector.get("matchExpressions") or []
    ]
    if expressions:
        out["matchExpressions"] = expressions
    return out


def translate_label_selector(
    selector: Mapping[str, Any] | None, virtual_namespace: str
) -> dict[str, Any] | None:
    """Host LabelSelector matching only pods of the virtual namespace; None stays None.

    None is kept because a nil selector often means "match nothing" (PodAffinityTerm), unlike
    an empty one ("match everything").
    """
    if selector is None:
        return None
    out = _translate_keys(selector)
    out["matchLabels"][NAMESPACE_LABEL] = virtual_namespace
    return out


def translate_label_selector_any(
    selector: Mapping[str, Any] | None, virtual_namespaces: Sequence[str] | None
) -> dict[str, Any] | None:
    """Like translate_label_selector for several namespaces; None means every virtual one."""
    if selector is None:
        return None
    out = _translate_keys(selector)
    # Exists still requires a synced pod: an empty selector must not match host-only pods.
    scope: dict[str, Any] = {"key": NAMESPACE_LABEL, "operator": "Exists"}
    if virtual_namespaces is not None:
        scope = {"key": NAMESPACE_LABEL, "operator": "In", "values": sorted(virtual_namespaces)}
    out["matchExpressions"] = [*out.get("matchExpressions", []), scope]
    return out


def collisions(
    objects: Iterable[tuple[str, str]], vcluster: str
) -> dict[str, list[tuple[str, str]]]:
    """Host names that more than one distinct (name, namespace) pair translates to."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, namespace in dict.fromkeys(objects):
        groups.setdefault(host_name(name, namespace, vcluster), []).append((name, namespace))
    return {host: pairs for host, pairs in groups.items() if len(pairs) > 1}
