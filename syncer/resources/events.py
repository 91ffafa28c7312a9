"""Events: the syncer's own Warnings on virtual objects, and host events copied back.

Host events about synced objects (pulling images, back-offs, scheduling failures) are what a
user of the virtual cluster needs to debug, so they are re-created on the virtual object.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import ClassVar

from ..core.controller import Engine
from ..kube import JSON, ApiError, timestamp
from ..translate.metadata import virtual_ref


class EventRecorder:
    #: Events this process wrote, remembered so a reconcile that finds the same reason again
    #: (every update of a Service with externalIPs) costs no request (the API would say 409).
    REMEMBERED = 10_000

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._written: OrderedDict[str, None] = OrderedDict()

    def warn(self, obj: JSON, kind: str, reason: str, message: str) -> None:
        self.record(obj, kind, reason, message, "Warning")

    def record(
        self, obj: JSON, kind: str, reason: str, message: str, type_: str = "Normal"
    ) -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        digest = hashlib.sha256(f"{meta.get('uid')}{reason}{message}".encode()).hexdigest()[:10]
        key = f"{ns}/{meta['name']}.{digest}"
        if key in self._written:
            return
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{digest}", "namespace": ns},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", "v1"),
                "kind": kind,
                "name": meta["name"],
                "namespace": ns,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": "vcluster-syncer"},
            "firstTimestamp": timestamp(),
            "lastTimestamp": timestamp(),
            "count": 1,
        }
        try:
            self.engine.virtual.create(f"/api/v1/namespaces/{ns}/events", event)
        except ApiError as exc:
            if exc.status != 409:  # the same event was already recorded
                raise
        self._written[key] = None
        while len(self._written) > self.REMEMBERED:
            self._written.popitem(last=False)


class Events:
    """Copy host events about synced pods/services/PVCs to their virtual objects."""

    name = "events"
    _KINDS: ClassVar[dict[str, str]] = {
        "Pod": "pods",
        "Service": "services",
        "PersistentVolumeClaim": "persistentvolumeclaims",
    }

    def setup(self, engine: Engine) -> None:
        self.engine = engine
        engine.watch_host(
            "events", engine.host_ns_path("/api/v1", "events"), label_selector=None
        ).handlers.clear()
        engine.host_informers["events"].add_handler(self._on_host_event)

    def _on_host_event(self, kind: str, event: JSON) -> None:
        if kind != "DELETED":
            meta = event["metadata"]
            self.engine.enqueue("events", meta["namespace"], meta["name"])

    def reconcile(self, namespace: str, name: str) -> None:
        event = self.engine.host_informers["events"].get(namespace, name)
        if event is None:
            return
        involved = event.get("involvedObject") or {}
        resource = self._KINDS.get(involved.get("kind", ""))
        if resource is None or resource not in self.engine.host_informers:
            return
        hobj = self.engine.host_informers[resource].get(namespace, involved.get("name", ""))
        ref = virtual_ref(hobj) if hobj else None
        if ref is None:
            return
        vobj = self.engine.virtual_informers[resource].get(ref[0], ref[1])
        if vobj is None:
            return
        EventRecorder(self.engine).record(
            vobj,
            involved["kind"],
            event.get("reason", ""),
            event.get("message", ""),
            event.get("type", "Normal"),
        )
