"""Rewrites of what a pod spec refers to: object names, pod label keys, downward API fields.

The helpers edit a spec in place; callers pass a deep copy so the public functions stay pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from ..constants import OBJECT_NAME, OBJECT_NAMESPACE, OBJECT_UID
from .names import translate_label_key, translate_label_selector, translate_label_selector_any

Ref = Callable[[str], str]
CONTAINER_KINDS = {
    "initContainers": "init container",
    "containers": "container",
    "ephemeralContainers": "ephemeral container",
}
# The host pod's own name/namespace/uid are not the virtual ones; the annotations written by
# host_metadata are.
_FIELD_ANNOTATIONS = {
    "metadata.name": OBJECT_NAME,
    "metadata.namespace": OBJECT_NAMESPACE,
    "metadata.uid": OBJECT_UID,
}
_LABEL_FIELD_RE = re.compile(r"^metadata\.labels\['(.+)'\]$")


def containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind label, container) for init, regular and ephemeral containers."""
    for key, label in CONTAINER_KINDS.items():
        for container in spec.get(key) or []:
            yield label, container


def _rename(holder: dict[str, Any] | None, key: str, ref: Ref) -> None:
    if holder and holder.get(key):
        holder[key] = ref(holder[key])


def field_path(path: str) -> str:
    """Downward API field path that yields the virtual value on the host pod."""
    if path in _FIELD_ANNOTATIONS:
        return f"metadata.annotations['{_FIELD_ANNOTATIONS[path]}']"
    if match := _LABEL_FIELD_RE.match(path):
        return f"metadata.labels['{translate_label_key(match[1])}']"
    return path


def _downward_items(downward: dict[str, Any] | None) -> None:
    for item in (downward or {}).get("items") or []:
        if item.get("fieldRef"):
            item["fieldRef"]["fieldPath"] = field_path(item["fieldRef"]["fieldPath"])


#: Replaces a projected source the host kubelet would resolve against the *host* —
#: ``serviceAccountToken``, ``podCertificate``, ``clusterTrustBundle`` — (volume name, index,
#: source) with another source; without one such sources are dropped.
TokenSource = Callable[[str, int, dict[str, Any]], dict[str, Any]]
CREDENTIAL_SOURCES = ("serviceAccountToken", "podCertificate", "clusterTrustBundle")


def translate_volume(volume: dict[str, Any], ref: Ref, token: TokenSource | None = None) -> None:
    """Rename the ConfigMaps, Secrets and claims a volume mounts; replace (or drop) its token
    sources: the host kubelet would mint tokens of the host ServiceAccount for them."""
    _rename(volume.get("configMap"), "name", ref)
    _rename(volume.get("secret"), "secretName", ref)
    _rename(volume.get("persistentVolumeClaim"), "claimName", ref)
    _rename((volume.get("csi") or {}).get("nodePublishSecretRef"), "name", ref)
    _downward_items(volume.get("downwardAPI"))
    projected = volume.get("projected")
    if not projected:
        return
    sources = []
    for i, source in enumerate(projected.get("sources") or []):
        if any(kind in source for kind in CREDENTIAL_SOURCES):
            if token is not None:  # after the renames below: it names a host Secret already
                sources.append(token(volume["name"], i, source))
            continue
        _rename(source.get("configMap"), "name", ref)
        _rename(source.get("secret"), "name", ref)
        _downward_items(source.get("downwardAPI"))
        sources.append(source)
    projected["sources"] = sources


def translate_container(container: dict[str, Any], ref: Ref) -> None:
    """Rename env and envFrom references; point downward API env at virtual values."""
    for env in container.get("env") or []:
        value_from = env.get("valueFrom") or {}
        _rename(value_from.get("configMapKeyRef"), "name", ref)
        _rename(value_from.get("secretKeyRef"), "name", ref)
        if value_from.get("fieldRef"):
            value_from["fieldRef"]["fieldPath"] = field_path(value_from["fieldRef"]["fieldPath"])
    for env_from in container.get("envFrom") or []:
        _rename(env_from.get("configMapRef"), "name", ref)
        _rename(env_from.get("secretRef"), "name", ref)


def _affinity_term(term: dict[str, Any], namespace: str) -> None:
    listed = term.pop("namespaces", None) or None
    namespace_selector = term.pop("namespaceSelector", None)
    # Empty namespaceSelector: every namespace. A non-empty one needs namespace labels, which a
    # pure translation lacks: approximated by the listed namespaces (or the pod's own).
    scope = None if namespace_selector == {} else (listed or [namespace])
    selector = translate_label_selector_any(term.pop("labelSelector", None), scope)
    if selector is not None:
        term["labelSelector"] = selector
    # The virtual API server (1.33+) has merged these keys into labelSelector already.
    term.pop("matchLabelKeys", None)
    term.pop("mismatchLabelKeys", None)


def translate_pod_selectors(spec: dict[str, Any], namespace: str) -> None:
    """Translate the pod label selectors of pod (anti-)affinity and topology spread."""
    for kind in ("podAffinity", "podAntiAffinity"):
        rules = (spec.get("affinity") or {}).get(kind) or {}
        for term in rules.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
            _affinity_term(term, namespace)
        for weighted in rules.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
            _affinity_term(weighted["podAffinityTerm"], namespace)
    for constraint in spec.get("topologySpreadConstraints") or []:
        selector = translate_label_selector(constraint.pop("labelSelector", None), namespace)
        if selector is not None:
            constraint["labelSelector"] = selector
        # Merged into labelSelector by the virtual API server (1.33+).
        constraint.pop("matchLabelKeys", None)


def translate_spec_refs(
    spec: dict[str, Any], namespace: str, ref: Ref, token: TokenSource | None = None
) -> None:
    """All reference rewrites of a pod spec (volumes, containers, pull secrets, selectors)."""
    for volume in spec.get("volumes") or []:
        translate_volume(volume, ref, token)
    for _, container in containers(spec):
        translate_container(container, ref)
    for secret in spec.get("imagePullSecrets") or []:
        _rename(secret, "name", ref)
    translate_pod_selectors(spec, namespace)
