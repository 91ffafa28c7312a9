"""A pooled vcluster's CPU budget (``--vcluster-prewarm-cpu``), so its start in the background
takes as little as possible from the test that runs meanwhile, lifted by an in-place resize of
its pod (``pods/resize``, Kubernetes >= 1.33) as soon as a test takes it — before it is ready,
if it is not yet.

- ``idle`` (the default): its containers request ``IDLE_REQUEST`` of CPU and have no limit.
  A pod's CPU weight on the node follows its requests (cgroup ``cpu.shares``: 2 here, against
  ~60 for a ready vcluster's pod and 256 for the host's API server), so it runs on what the
  node leaves idle — at full speed while the test waits or thinks, hardly at all while the
  test computes. Lifting restores the requests the chart values give.
- a quantity (``250m``): a CPU limit per container (a hard cap, also when the node is idle).
  A resize cannot remove a limit, so lifting raises it to the values' own or to ``UNLIMITED``
  (far above any node: the same as none).

The StatefulSet's template keeps the budget (changing it would replace the pod): a pod the
StatefulSet re-creates later starts under the budget again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ...settings import IDLE as IDLE  # re-exported

CONTAINERS = {"control-plane": "controlPlane", "syncer": "syncer"}  # container -> values key
UNLIMITED = "64"
IDLE_REQUEST = "1m"  # the smallest request: the kubelet's minimum cpu.shares (2)


def _resources(values: Mapping[str, Any], key: str, kind: str) -> Mapping[str, Any]:
    return (((values.get(key) or {}).get("resources") or {}).get(kind)) or {}


def budget_values(cpu: str) -> dict[str, Any]:
    """Chart values putting the budget on each of the pod's two containers."""
    if cpu == IDLE:
        resources: dict[str, Any] = {"requests": {"cpu": IDLE_REQUEST}}
    else:
        resources = {"limits": {"cpu": cpu}}
    return {key: {"resources": resources} for key in CONTAINERS.values()}


def lifted_resources(
    cpu: str | None, values: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, dict[str, str]]:
    """Each container's CPU ``requests`` (``idle``) or ``limits`` (a quantity) without the
    budget: the values' own, else the chart's ``defaults`` (its values.yaml); a limit neither
    gives is ``UNLIMITED``."""
    kind = "requests" if cpu == IDLE else "limits"
    out = {}
    for container, key in CONTAINERS.items():
        own = _resources(values, key, kind).get("cpu") or _resources(defaults, key, kind).get("cpu")
        out[container] = {kind: str(own or (UNLIMITED if kind == "limits" else "0"))}
    return out


def resize_patch(resources: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The strategic-merge patch of ``pods/resize`` that sets these CPU requests or limits."""
    containers = [
        {"name": name, "resources": {kind: {"cpu": cpu} for kind, cpu in r.items()}}
        for name, r in resources.items()
    ]
    return {"spec": {"containers": containers}}


class CpuBudget:
    """Whether the budget still holds, thread-safe: the pool's thread starts the vcluster
    while a test's thread may lift the budget at any point of that start."""

    def __init__(self, cpu: str | None) -> None:
        self.cpu = cpu
        self._lock = threading.Lock()
        self._lifted = cpu is None
        self._resize: Callable[[], None] | None = None  # set once the pod exists

    def values(self) -> dict[str, Any]:
        """Values for ``helm install``: the limits while not lifted, else nothing."""
        with self._lock:
            return {} if self._lifted or self.cpu is None else budget_values(self.cpu)

    def pod_exists(self, resize: Callable[[], None]) -> None:
        """The pod is there: lift now if a test asked already, else when it asks."""
        with self._lock:
            self._resize = resize
            if not self._lifted:
                return
        if self.cpu is not None:
            resize()

    def lift(self) -> bool:
        """Lift it (once); whether the pod was resized now (False: before the pod existed,
        so ``pod_exists`` resizes it, or it had no budget)."""
        with self._lock:
            if self._lifted:
                return False
            self._lifted = True
            resize = self._resize
        if resize is None:
            return False
        resize()
        return True
