"""A pooled vcluster's CPU budget: it starts under a CPU limit (``--vcluster-prewarm-cpu``), so
its start in the background takes at most that much from the test that runs meanwhile, and the
limit is lifted by an in-place resize of its pod (``pods/resize``, Kubernetes ≥ 1.33) as soon
as a test takes it — before it is ready, if it is not yet.

A resize cannot remove a limit, so lifting raises it to what the chart values give, or to
``UNLIMITED`` (far above any node: the same as none). The StatefulSet's template keeps the
budget (changing it would replace the pod): a pod the StatefulSet re-creates later starts
under the budget again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

CONTAINERS = {"control-plane": "controlPlane", "syncer": "syncer"}  # container -> values key
UNLIMITED = "64"


def budget_values(cpu: str) -> dict[str, Any]:
    """Chart values putting ``cpu`` as the limit of each of the pod's two containers."""
    return {key: {"resources": {"limits": {"cpu": cpu}}} for key in CONTAINERS.values()}


def lifted_limits(values: Mapping[str, Any]) -> dict[str, str]:
    """The CPU limit each container has without the budget: the values' own, else none."""
    out = {}
    for container, key in CONTAINERS.items():
        limits = ((values.get(key) or {}).get("resources") or {}).get("limits") or {}
        out[container] = str(limits.get("cpu") or UNLIMITED)
    return out


def resize_patch(limits: Mapping[str, str]) -> dict[str, Any]:
    """The strategic-merge patch of ``pods/resize`` that sets these CPU limits."""
    containers = [
        {"name": name, "resources": {"limits": {"cpu": cpu}}} for name, cpu in limits.items()
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
