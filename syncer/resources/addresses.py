"""The address policy of selector-less Endpoints and EndpointSlices (translate/endpoint_policy.py)
applied to their host copies: the vcluster's pod IPs come from the host pods informer, refused
addresses are named in a warning Event, and an object that had some refused is synced again
when a pod of the vcluster gets an address (it may have been the pod the object named)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..core.controller import Engine
from ..kube import JSON
from ..translate.endpoint_policy import Allowed, Network, allowed_by, filter_endpoints, filter_slice

log = logging.getLogger(__name__)
Translate = Callable[[JSON, str, str], JSON]
Key = tuple[str, str, str]


class AddressPolicy:
    """A Resource only for its ``setup`` (nothing is queued under its name)."""

    name = "endpoint-addresses"

    def __init__(self, cidrs: tuple[Network, ...] = ()) -> None:
        self.cidrs = cidrs
        self._refused: dict[Key, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def setup(self, engine: Engine) -> None:
        self.engine = engine
        pods = engine.host_informers.get("pods")
        if pods is not None:
            pods.add_handler(self._pod_changed)

    def reconcile(self, namespace: str, name: str) -> None:
        pass

    # -- the filters DownSync calls instead of the plain translations
    def endpoints(self, translate: Translate) -> Translate:
        return self._filtered("endpoints", "Endpoints", translate, filter_endpoints)

    def slices(self, translate: Translate) -> Translate:
        return self._filtered("endpointslices", "EndpointSlice", translate, filter_slice)

    def _filtered(
        self,
        resource: str,
        kind: str,
        translate: Translate,
        keep: Callable[[JSON, Allowed], tuple[JSON, list[str]]],
    ) -> Translate:
        def translated(obj: JSON, host_namespace: str, vcluster: str) -> JSON:
            out, refused = keep(translate(obj, host_namespace, vcluster), self.allowed())
            self._note((resource, obj["metadata"]["namespace"], obj["metadata"]["name"]),
                       kind, obj, refused)  # fmt: skip
            return out

        return translated

    def allowed(self) -> Allowed:
        pods = self.engine.host_informers.get("pods")
        ips: set[str] = set()
        if pods is not None:
            pods.synced.wait(10)  # an Endpoints synced at start still sees the pods made before
            for pod in pods.items():
                status: Any = pod.get("status") or {}
                ips |= {p.get("ip", "") for p in status.get("podIPs") or []}
                ips.add(status.get("podIP") or "")
        ips.discard("")
        return allowed_by(ips, self.cidrs)

    def _note(self, key: Key, kind: str, obj: JSON, refused: list[str]) -> None:
        with self._lock:
            before = self._refused.get(key)
            if refused:
                self._refused[key] = tuple(refused)
            else:
                self._refused.pop(key, None)
        if refused and tuple(refused) != before:
            message = (
                f"not synced to the host: {', '.join(sorted(set(refused)))} "
                "(not a pod of this vcluster, nor in an allowed CIDR: sync.endpoints.allowedCIDRs)"
            )
            log.warning("%s %s/%s: %s", kind, key[1], key[2], message)
            if self.engine.recorder is not None:
                self.engine.recorder.warn(obj, kind, "AddressesNotSynced", message)

    def _pod_changed(self, _kind: str, pod: JSON) -> None:
        if not (pod.get("status") or {}).get("podIP"):
            return
        with self._lock:
            waiting = list(self._refused)
        for resource, namespace, name in waiting:
            self.engine.enqueue(resource, namespace, name)
