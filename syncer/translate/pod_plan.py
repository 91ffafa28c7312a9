"""What one reconcile of a pod does, decided from the virtual pod and its host copy (pure).

As vcluster's syncers, by direction: ``sync_to_host`` (virtual only: create the host pod),
``sync`` (both: update the host copy, bring status back), ``sync_to_virtual`` (host only, or the
host copy vanished under a running virtual pod: delete so its controller makes a new one), and
the deletions. ``Pods.reconcile`` carries the plan out; the table tests are the specification.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..constants import ENDED_PHASES, LABEL_PREFIX, OBJECT_NAME, OBJECT_NAMESPACE, OBJECT_UID

#: Host pod annotation: the virtual annotation keys copied onto it (so a removed one goes too).
MANAGED_ANNOTATIONS = f"{LABEL_PREFIX}/managed-annotations"
_BOOKKEEPING = frozenset({OBJECT_NAME, OBJECT_NAMESPACE, OBJECT_UID, MANAGED_ANNOTATIONS})
_OWNED = LABEL_PREFIX + "/"

Action = Literal[
    "none",  # nothing to do (both are gone, or the host copy is not this pod's and going)
    "status",  # the host copy is terminating: only its status comes back (its last, terminal)
    "create",  # sync_to_host: no host copy yet
    "update",  # sync: metadata, mutable spec, binding, status, token
    "delete-host",  # the virtual pod is gone or terminating: delete the host copy
    "replace-host",  # the host copy belongs to an earlier virtual pod of this name
    "finalize-virtual",  # a terminating virtual pod whose host copy is gone: no kubelet will
    "delete-virtual",  # sync_to_virtual: it ran on the host and its host copy vanished
    "deny-node",  # spec.nodeName names no node of this vcluster
]


@dataclass(frozen=True)
class Plan:
    action: Action
    grace: int | None = None  # for delete-host
    reason: str = ""


def _ran(vpod: Mapping[str, Any]) -> bool:
    """Whether a host copy ran it: only the host's status (copied back) sets these."""
    status = vpod.get("status") or {}
    return bool(status.get("startTime") or status.get("hostIP"))


def plan(
    vpod: Mapping[str, Any] | None,
    hpod: Mapping[str, Any] | None,
    *,
    nodes: Collection[str] = (),
) -> Plan:
    """The reconcile for a virtual pod and its host copy (either may be None).

    ``hpod`` must already be the copy of this virtual name (callers drop a colliding one).
    ``nodes`` are the vcluster's (fake) nodes: a pod created with ``spec.nodeName`` bypasses
    the scheduler as on a real cluster and runs on the host node of that name, which exists
    exactly when the vcluster shows a node of that name."""
    if vpod is None:
        return Plan("delete-host") if hpod is not None else Plan("none")
    vmeta = vpod.get("metadata") or {}
    hmeta = (hpod or {}).get("metadata") or {}
    ours = (hmeta.get("annotations") or {}).get(OBJECT_UID) == vmeta.get("uid")
    if vmeta.get("deletionTimestamp"):
        if hpod is None:
            return Plan("finalize-virtual")
        if hmeta.get("deletionTimestamp"):
            return Plan("status" if ours else "none")
        return Plan("delete-host", grace=vmeta.get("deletionGracePeriodSeconds"))
    if hpod is not None:
        if not ours:
            return Plan("replace-host", grace=0, reason="left over from an earlier pod")
        if hmeta.get("deletionTimestamp"):
            return Plan("status")
        return Plan("update")
    node = (vpod.get("spec") or {}).get("nodeName")
    phase = (vpod.get("status") or {}).get("phase")
    if node and _ran(vpod):
        if phase in ENDED_PHASES:
            return Plan("none")  # its record stays, as a kubelet's would
        return Plan("delete-virtual", reason="its host pod vanished")
    if node and node not in nodes:
        known = ", ".join(sorted(nodes)) or "none yet"
        return Plan(
            "deny-node",
            reason=f"spec.nodeName {node!r} is not a node of this vcluster (its nodes: {known})",
        )
    return Plan("create")


def metadata_patch(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, Any] | None:
    """Merge patch bringing a host pod's labels and annotations to the desired ones; None when
    they agree. Only what the syncer wrote is touched: labels under LABEL_PREFIX, and the
    annotations it copied (``MANAGED_ANNOTATIONS`` lists them), so host-added ones stay."""
    want_labels: Mapping[str, str] = desired.get("labels") or {}
    have_labels: Mapping[str, str] = actual.get("labels") or {}
    labels: dict[str, str | None] = {
        k: v for k, v in want_labels.items() if have_labels.get(k) != v
    }
    labels |= {k: None for k in have_labels if k.startswith(_OWNED) and k not in want_labels}
    want: Mapping[str, str] = desired.get("annotations") or {}
    have: Mapping[str, str] = actual.get("annotations") or {}
    before = {k for k in (have.get(MANAGED_ANNOTATIONS) or "").split(",") if k} | _BOOKKEEPING
    annotations: dict[str, str | None] = {k: v for k, v in want.items() if have.get(k) != v}
    annotations |= {k: None for k in before if k in have and k not in want}
    patch: dict[str, Any] = {}
    if labels:
        patch["labels"] = labels
    if annotations:
        patch["annotations"] = annotations
    return {"metadata": patch} if patch else None


def managed_annotations(annotations: Mapping[str, str]) -> str:
    """The value of MANAGED_ANNOTATIONS for these host annotations."""
    return ",".join(sorted(k for k in annotations if k not in _BOOKKEEPING))


def spec_patch(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, Any] | None:
    """Strategic merge patch for what a running pod may change: container images and
    ``activeDeadlineSeconds`` (tolerations may only be added: they are, keyed by content)."""
    patch: dict[str, Any] = {}
    for key in ("containers", "initContainers"):
        want = {c["name"]: c.get("image") for c in desired.get(key) or []}
        have = {c["name"]: c.get("image") for c in actual.get(key) or []}
        changed = [{"name": n, "image": i} for n, i in want.items() if n in have and have[n] != i]
        if changed:
            patch[key] = changed
    deadline = desired.get("activeDeadlineSeconds")
    if deadline is not None and deadline != actual.get("activeDeadlineSeconds"):
        patch["activeDeadlineSeconds"] = deadline
    have_tolerations = actual.get("tolerations") or []
    added = [t for t in desired.get("tolerations") or [] if t not in have_tolerations]
    if added:
        patch["tolerations"] = [*have_tolerations, *added]
    return {"spec": patch} if patch else None


def resize_patch(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, Any] | None:
    """Patch for the host pod's ``resize`` subresource (in-place resize) when a container's
    resources differ; None when they agree. The kubelet does the resize; its progress comes
    back with the status (``PodResizePending``/``PodResizeInProgress``, container resources)."""
    have = {c["name"]: c.get("resources") or {} for c in actual.get("containers") or []}
    changed = [
        {"name": c["name"], "resources": c.get("resources") or {}}
        for c in desired.get("containers") or []
        if c["name"] in have and have[c["name"]] != (c.get("resources") or {})
    ]
    return {"spec": {"containers": changed}} if changed else None


def new_ephemeral_containers(
    desired: Mapping[str, Any], actual: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Ephemeral containers (``kubectl debug``) the host pod does not have yet."""
    have = {c.get("name") for c in actual.get("ephemeralContainers") or []}
    return [dict(c) for c in desired.get("ephemeralContainers") or [] if c.get("name") not in have]
