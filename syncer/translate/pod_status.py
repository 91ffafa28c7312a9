"""The status a virtual pod gets from its host copy, and the one it ends with (pure).

The host's kubelet writes the host pod's status; the syncer copies it back. Two things a copy
alone gets wrong: conditions only the vcluster set (``DisruptionTarget`` from an eviction in
the vcluster, readiness-gate conditions of its controllers) must survive it, and a pod whose
host copy is gone before the syncer saw its last status must still end in a terminal phase —
a kubelet always writes one before it removes a pod, and controllers wait for it (a Job with a
pod failure policy keeps its finalizer on the pod until the phase is terminal).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..constants import ENDED_PHASES

#: Condition types the kubelet owns: the host's value (or its absence) is the truth.
KUBELET_CONDITIONS = frozenset(
    {
        "PodScheduled",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodReadyToStartContainers",
        "PodResizePending",
        "PodResizeInProgress",
    }
)

#: What a kubelet reports for a container it cannot account for when the pod ends.
UNKNOWN_TERMINATION = {
    "exitCode": 137,
    "reason": "ContainerStatusUnknown",
    "message": "The container could not be located when the pod was terminated",
}


def virtual_status(host: Mapping[str, Any], virtual: Mapping[str, Any] | None) -> dict[str, Any]:
    """The host pod's status for its virtual pod: the host's, plus the virtual pod's own
    conditions (types the kubelet does not own and the host does not have)."""
    status = dict(host)
    have = {c.get("type") for c in host.get("conditions") or []}
    own = [
        c
        for c in (virtual or {}).get("conditions") or []
        if c.get("type") not in KUBELET_CONDITIONS and c.get("type") not in have
    ]
    if own:
        status["conditions"] = [*(host.get("conditions") or []), *own]
    return status


def bound_status(virtual: Mapping[str, Any] | None) -> dict[str, Any]:
    """The virtual pod's status as a binding leaves it: the API server sets ``PodScheduled``
    True there (pod storage's ``setPodNodeAndMetadata``). The syncer compares the host's status
    with this after it binds, so a host status that says no more than that is not written again
    (one write per pod less)."""
    status = dict(virtual or {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
    status["conditions"] = [{"type": "PodScheduled", "status": "True"}, *conditions]
    return status


def _terminated(status: Mapping[str, Any]) -> dict[str, Any]:
    state = status.get("state") or {}
    if "terminated" in state:
        return dict(status)
    return {
        **status,
        "state": {"terminated": dict(UNKNOWN_TERMINATION)},
        "lastState": state if "running" in state else status.get("lastState") or {},
        "ready": False,
        "started": False,
    }


def terminal_status(virtual: Mapping[str, Any] | None, now: str) -> dict[str, Any] | None:
    """The status a kubelet writes as it removes a pod that had not ended; None when its
    phase is already terminal. Every container not terminated is (``ContainerStatusUnknown``,
    137, as a kubelet reports one it cannot find); the phase is Succeeded when every container
    exited 0, else Failed; Ready and ContainersReady turn False at ``now``."""
    status = dict(virtual or {})
    if status.get("phase") in ENDED_PHASES:
        return None
    containers = [_terminated(c) for c in status.get("containerStatuses") or []]
    succeeded = bool(containers) and all(
        c["state"]["terminated"].get("exitCode") == 0 for c in containers
    )
    phase = "Succeeded" if succeeded else "Failed"
    conditions = []
    for c in status.get("conditions") or []:
        if c.get("type") in ("Ready", "ContainersReady") and c.get("status") != "False":
            reason = "PodCompleted" if succeeded or c["type"] == "Ready" else "ContainersNotReady"
            c = {**c, "status": "False", "reason": reason, "lastTransitionTime": now}
        conditions.append(c)
    status |= {"phase": phase, "conditions": conditions}
    if containers:
        status["containerStatuses"] = containers
    if status.get("initContainerStatuses"):
        status["initContainerStatuses"] = [_terminated(c) for c in status["initContainerStatuses"]]
    return status
