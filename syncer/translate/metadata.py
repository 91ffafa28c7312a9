"""Host metadata for synced objects, and the bookkeeping that maps host objects back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..constants import (
    LABEL_PREFIX,
    MANAGED_BY_LABEL,
    OBJECT_KIND,
    OBJECT_NAME,
    OBJECT_NAMESPACE,
    OBJECT_UID,
)
from .names import host_name, translate_labels

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_OWNED = LABEL_PREFIX + "/"


def json_copy(value: Any) -> Any:
    """A deep copy of decoded JSON (dicts, lists, scalars): several times faster than
    copy.deepcopy, which the translations called for every object they copy."""
    if type(value) is dict:
        return {k: json_copy(v) for k, v in value.items()}
    if type(value) is list:
        return [json_copy(v) for v in value]
    return value


def virtual_identity(virtual_obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of a namespaced virtual object; ValueError when either is missing."""
    meta = virtual_obj.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not name or not namespace:
        # Guessing "default" would sync the object under another object's host name.
        raise ValueError(f"virtual object needs metadata.name and metadata.namespace: {meta!r}")
    return str(namespace), str(name)


def host_metadata(
    virtual_obj: Mapping[str, Any], kind: str, host_namespace: str, vcluster: str
) -> dict[str, Any]:
    """Fresh host metadata: translated name and labels, copied annotations, bookkeeping."""
    namespace, name = virtual_identity(virtual_obj)
    meta = virtual_obj["metadata"]
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        # Keys under LABEL_PREFIX are the syncer's; a virtual user must not spoof them.
        if k != LAST_APPLIED and not k.startswith(_OWNED)
    }
    annotations |= {
        OBJECT_NAME: name,
        OBJECT_NAMESPACE: namespace,
        OBJECT_UID: str(meta.get("uid", "")),
        OBJECT_KIND: kind,
    }
    return {
        "name": host_name(name, namespace, vcluster),
        "namespace": host_namespace,
        "labels": translate_labels(meta.get("labels"), namespace, vcluster),
        "annotations": annotations,
    }


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def virtual_ref(host_obj: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(namespace, name, uid) of the virtual twin, or None when the object is not synced."""
    ann = _annotations(host_obj)
    ref = (ann.get(OBJECT_NAMESPACE), ann.get(OBJECT_NAME), ann.get(OBJECT_UID))
    if ref[0] and ref[1] and ref[2] is not None:
        return ref[0], ref[1], ref[2]
    return None


def is_managed_by(host_obj: Mapping[str, Any], vcluster: str) -> bool:
    """Whether the host object was written by the syncer of this virtual cluster."""
    return _labels(host_obj).get(MANAGED_BY_LABEL) == vcluster


def is_orphan(host_obj: Mapping[str, Any], virtual_obj: Mapping[str, Any] | None) -> bool:
    """True when the virtual twin is gone or was recreated (uid differs): delete the host copy.

    Callers check is_managed_by first; this only compares identities.
    """
    if virtual_obj is None:
        return True
    uid = str((virtual_obj.get("metadata") or {}).get("uid") or "")
    return _annotations(host_obj).get(OBJECT_UID) != uid


def _owned_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in _labels(obj).items() if k.startswith(_OWNED)}


def needs_update(
    desired: Mapping[str, Any], actual: Mapping[str, Any], fields: Sequence[str]
) -> bool:
    """Whether the host object differs from the desired one in the given top-level fields or
    in labels/annotations.

    Fields compare exactly (a removed key must propagate), so pass fields the host does not
    default. Labels compare only under LABEL_PREFIX: every label the syncer writes lives
    there, so labels added on the host side do not cause endless updates. Annotations cannot
    be told apart and compare exactly.
    """
    if any(desired.get(f) != actual.get(f) for f in fields):
        return True
    if _owned_labels(desired) != _owned_labels(actual):
        return True
    return dict(_annotations(desired)) != dict(_annotations(actual))
