"""Down-sync of namespaced objects: virtual exists -> host copy; virtual gone -> host copy gone.

One class serves ConfigMaps, Secrets, Services, Endpoints, PVCs and Ingresses; each differs only
in its paths, its pure translation, the fields compared, whether status flows back, and a few
hooks (Services keep the host's allocated IPs, ConfigMaps/Secrets sync only when a pod uses them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.controller import Engine
from ..kube import JSON, ApiError
from ..translate.metadata import is_managed_by, needs_update, virtual_ref
from ..translate.names import host_name

log = logging.getLogger(__name__)
Translate = Callable[[JSON, str, str], JSON]


@dataclass
class DownSync:
    name: str  # resource plural, also the queue's resource key
    api: str  # "/api/v1", "/apis/networking.k8s.io/v1"
    kind: str
    translate: Translate
    fields: tuple[str, ...]
    status_back: bool = False
    wanted: Callable[[JSON], bool] = field(default=lambda obj: True)
    # Fields the host owns that must survive a PUT (e.g. Service.spec.clusterIP).
    keep_from_host: Callable[[JSON, JSON], None] = field(default=lambda desired, actual: None)
    after_sync: Callable[[JSON, JSON], None] = field(default=lambda vobj, hobj: None)
    # Another host object to try when the host refuses a create as invalid (422), or None.
    on_invalid: Callable[[JSON, str], JSON | None] = field(default=lambda desired, msg: None)
    engine: Engine = field(init=False, repr=False)

    def setup(self, engine: Engine) -> None:
        self.engine = engine
        engine.watch_virtual(self.name, f"{self.api}/{self.name}")
        engine.watch_host(self.name, engine.host_ns_path(self.api, self.name))

    # -- helpers
    @property
    def vc(self) -> str:
        return self.engine.settings.name

    @property
    def host_ns(self) -> str:
        return self.engine.settings.host_namespace

    def host_path(self, host_name_: str = "") -> str:
        base = self.engine.host_ns_path(self.api, self.name)
        return f"{base}/{host_name_}" if host_name_ else base

    def virtual_path(self, namespace: str, name: str) -> str:
        return f"{self.api}/namespaces/{namespace}/{self.name}/{name}"

    def virtual(self, namespace: str, name: str) -> JSON | None:
        return self.engine.virtual_informers[self.name].get(namespace, name)

    def host(self, hname: str) -> JSON | None:
        return self.engine.host_informers[self.name].get(self.host_ns, hname)

    def delete_host(self, hobj: JSON) -> None:
        meta = hobj["metadata"]
        self.engine.host.delete(self.host_path(meta["name"]), uid=meta.get("uid"))

    # -- reconcile
    def live_virtual(self, namespace: str, name: str) -> JSON | None:
        """The virtual object as the API server has it now (the cache may lag)."""
        try:
            obj: JSON = self.engine.virtual.get(self.virtual_path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def live_host(self, hname: str) -> JSON | None:
        try:
            obj: JSON = self.engine.host.get(self.host_path(hname))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def reconcile(self, namespace: str, name: str) -> None:
        vobj = self.virtual(namespace, name)
        hname = host_name(name, namespace, self.vc)
        hobj = self.host(hname)
        ours = hobj is not None and (virtual_ref(hobj) or ("", "", ""))[:2] == (namespace, name)
        stale = hobj is not None and (
            vobj is None or (virtual_ref(hobj) or ("", "", ""))[2] != vobj["metadata"].get("uid")
        )
        if ours and stale:
            # About to delete or replace a host copy: confirm with the API server first, so a
            # lagging cache (e.g. right after a Service was re-created) never deletes live data.
            vobj = self.live_virtual(namespace, name)
        if vobj is None or vobj["metadata"].get("deletionTimestamp") or not self.wanted(vobj):
            if hobj is not None and ours:
                self.delete_host(hobj)
            return
        self.ensure(vobj, hobj)

    def ensure(self, vobj: JSON, hobj: JSON | None = None) -> JSON | None:
        """Create or update the host copy of ``vobj``; returns the host object (or None)."""
        meta = vobj["metadata"]
        desired = self.engine.own(self.translate(vobj, self.host_ns, self.vc))
        hname = desired["metadata"]["name"]
        if hobj is None:
            hobj = self.host(hname)
        if hobj is None:
            try:
                hobj = self._create(desired)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                hobj = self.engine.host.get(self.host_path(hname))
                if not is_managed_by(hobj, self.vc):
                    self._collision(vobj, hname)
                    return None
        elif (virtual_ref(hobj) or ("", "", ""))[2] != meta.get("uid"):
            # Looks like a copy of an earlier object with the same name; the host cache may
            # just lag behind (a Service's copy is re-pointed to its re-created twin), so ask.
            hobj = self.live_host(hname)
            if hobj is not None and (virtual_ref(hobj) or ("", "", ""))[2] != meta.get("uid"):
                self.delete_host(hobj)
                self.engine.enqueue(self.name, meta["namespace"], meta["name"])
                return None
            if hobj is None:
                self.engine.enqueue(self.name, meta["namespace"], meta["name"])
                return None
        else:
            # Compared after taking what the host owns, so host-allocated fields (a Service's
            # node ports) do not turn every reconcile into a write.
            self.keep_from_host(desired, hobj)
            if needs_update(desired, hobj, self.fields):
                hobj = self._replace(desired, hobj)
        assert hobj is not None
        if self.status_back:
            self.copy_status(vobj, hobj)
        self.after_sync(vobj, hobj)
        return hobj

    def _create(self, desired: JSON) -> JSON:
        try:
            created: JSON = self.engine.host.create(self.host_path(), desired)
        except ApiError as exc:
            retry = self.on_invalid(desired, str(exc)) if exc.status == 422 else None
            if retry is None:
                raise
            log.info(
                "%s %s: %s; retrying with what the host allocates",
                self.name,
                desired["metadata"]["name"],
                exc,
            )
            created = self.engine.host.create(self.host_path(), retry)
        return created

    def _replace(self, desired: JSON, hobj: JSON) -> JSON:
        desired["metadata"]["resourceVersion"] = hobj["metadata"]["resourceVersion"]
        path = self.host_path(hobj["metadata"]["name"])
        try:
            replaced: JSON = self.engine.host.replace(path, desired)
        except ApiError as exc:
            retry = self.on_invalid(desired, str(exc)) if exc.status == 422 else None
            if retry is None:
                raise
            log.info("%s %s: %s; keeping what the host has", self.name, path, exc)
            self.keep_from_host(retry, hobj)
            replaced = self.engine.host.replace(path, retry)
        return replaced

    def copy_status(self, vobj: JSON, hobj: JSON) -> None:
        status = hobj.get("status")
        if status_differs(status, vobj.get("status")):
            meta = vobj["metadata"]
            path = self.virtual_path(meta["namespace"], meta["name"]) + "/status"
            self.engine.virtual.merge_patch(path, {"status": status})

    def _collision(self, vobj: JSON, hname: str) -> None:
        msg = (
            f"host {self.kind} {self.host_ns}/{hname} exists and is not managed by vcluster "
            f"{self.vc}; not syncing"
        )
        log.warning("%s %s/%s: %s", self.name, vobj["metadata"].get("namespace"), hname, msg)
        if self.engine.recorder is not None:
            self.engine.recorder.warn(vobj, self.kind, "SyncCollision", msg)


def status_differs(host: JSON | None, virtual: JSON | None) -> bool:
    """Whether a merge patch of the host status would change the virtual one.

    Only the host's keys count: a key the virtual side has on its own (merge patch keeps it)
    must not turn every later event into another, identical patch.
    """
    if not host:
        return False
    if not virtual:
        return True
    return any(
        _conditions(v) != _conditions(virtual.get(k)) if k == "conditions" else virtual.get(k) != v
        for k, v in host.items()
    )


def _conditions(conditions: Any) -> Any:
    """Conditions without their timestamps: binding a virtual pod sets PodScheduled there at
    another instant than on the host, and copying just that instant is one more write per pod
    (the next real change copies the whole status, timestamps included)."""
    if not isinstance(conditions, list):
        return conditions
    return [
        {k: v for k, v in c.items() if k not in ("lastProbeTime", "lastTransitionTime")}
        if isinstance(c, dict)
        else c
        for c in conditions
    ]


def keep_service_ips(desired: JSON, actual: JSON) -> None:
    spec, have = desired.setdefault("spec", {}), actual.get("spec") or {}
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "healthCheckNodePort"):
        if key in have:
            spec[key] = have[key]
    if spec.get("type") not in ("NodePort", "LoadBalancer"):
        return  # a ClusterIP Service has no node ports (the host refuses them)
    node_ports = {
        (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
        for p in have.get("ports") or []
    }
    for port in spec.get("ports") or []:
        np = node_ports.get((port.get("port"), port.get("protocol", "TCP")))
        if np and "nodePort" not in port:
            port["nodePort"] = np
