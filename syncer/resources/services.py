"""Services keep one ClusterIP on both sides. The host copy asks for the virtual ClusterIP (the
virtual API server is started with the host's service CIDR, so the address is valid there);
only when the host refuses it (taken by another vcluster's service, or the CIDRs differ) does
the host allocate, and then the virtual service is re-created with the host's IP.

Endpoints are synced only for selector-less services; the virtual controller-manager computes
the others from the virtual pods, whose IPs are the host pods' IPs.
"""

from __future__ import annotations

import copy
import logging

from ..constants import OBJECT_UID
from ..core.controller import Engine
from ..kube import JSON, ApiError
from ..translate.names import host_name
from ..translate.services import user_slice_service

log = logging.getLogger(__name__)
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation")


def host_node_ports(vsvc: JSON, hsvc: JSON) -> list[JSON] | None:
    """The virtual Service's ports with the host copy's node ports, when they differ."""
    spec, host = vsvc.get("spec") or {}, hsvc.get("spec") or {}
    if spec.get("type") not in ("NodePort", "LoadBalancer") or host.get("type") != spec.get("type"):
        return None
    allocated = {
        (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
        for p in host.get("ports") or []
    }
    ports = [dict(p) for p in spec.get("ports") or []]
    changed = False
    for port in ports:
        np = allocated.get((port.get("port"), port.get("protocol", "TCP")))
        if np and port.get("nodePort") != np:
            port["nodePort"] = np
            changed = True
    return ports if changed else None


def _selectorless_service(engine: Engine, namespace: str, name: str) -> bool:
    """Whether the vcluster has this Service without a selector (its endpoints by hand)."""
    services = engine.virtual_informers.get("services")
    svc = services.get(namespace, name) if services else None
    return svc is not None and not (svc.get("spec") or {}).get("selector")


class ServiceIPs:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def wanted(self, svc: JSON) -> bool:
        meta = svc["metadata"]
        if (meta["namespace"], meta["name"]) in self.engine.pinned:
            return False
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName" and not self.engine.settings.allow_external_name:
            # In the vcluster its DNS answers the name; on the host it would only serve the
            # host's ingress controllers and DNS as a CNAME to any name — another tenant's
            # Service, the host's API server (the ExternalName class of ingress escapes).
            if self.engine.recorder is not None:
                message = (
                    f"type ExternalName ({spec.get('externalName')}) not synced to the host: "
                    "there it would point the host's DNS and ingress controllers at any name; "
                    "allowed by the chart value sync.services.allowExternalName"
                )
                self.engine.recorder.warn(svc, "Service", "ExternalNameNotSynced", message)
            return False
        return True

    @staticmethod
    def selectorless(engine: Engine, ep: JSON) -> bool:
        meta = ep["metadata"]
        if (meta["namespace"], meta["name"]) in engine.pinned:
            return False
        return _selectorless_service(engine, meta["namespace"], meta["name"])

    @staticmethod
    def selectorless_slice(engine: Engine, eps: JSON) -> bool:
        """A user's EndpointSlice for a selector-less Service of its namespace."""
        name, namespace = user_slice_service(eps), eps["metadata"]["namespace"]
        if (namespace, name) in engine.pinned:
            return False
        return bool(name) and _selectorless_service(engine, namespace, name)

    def align(self, vsvc: JSON, hsvc: JSON) -> None:
        self._warn_external_ips(vsvc)
        self._align_ip(vsvc, hsvc)
        self._align_node_ports(vsvc, hsvc)

    def _warn_external_ips(self, vsvc: JSON) -> None:
        ips = (vsvc.get("spec") or {}).get("externalIPs")
        if ips and not self.engine.settings.allow_external_ips and self.engine.recorder:
            message = (
                f"externalIPs {', '.join(ips)} not synced to the host: they would route any "
                "traffic to those IPs cluster-wide (CVE-2020-8554); allowed by the chart value "
                "sync.services.allowExternalIPs"
            )
            self.engine.recorder.warn(vsvc, "Service", "ExternalIPsNotSynced", message)

    def _align_node_ports(self, vsvc: JSON, hsvc: JSON) -> None:
        """The virtual Service shows the host's node ports (those are the ones that answer)."""
        ports = host_node_ports(vsvc, hsvc)
        if ports is None:
            return
        meta = vsvc["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/services/{meta['name']}"
        try:
            self.engine.virtual.merge_patch(
                path, {"metadata": {"resourceVersion": meta.get("resourceVersion")},
                       "spec": {"ports": ports}}
            )  # fmt: skip
        except ApiError as exc:
            if exc.status not in (404, 409, 422):  # gone, changed since, or port taken
                raise
            log.info(
                "service %s/%s: node ports not copied: %s", meta["namespace"], meta["name"], exc
            )

    def _align_ip(self, vsvc: JSON, hsvc: JSON) -> None:
        want = (hsvc.get("spec") or {}).get("clusterIP")
        have = (vsvc.get("spec") or {}).get("clusterIP")
        if not want or want == "None" or want == have:
            return
        meta = vsvc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        path = f"/api/v1/namespaces/{ns}/services/{name}"
        try:  # the cache may hold the object we already re-created
            vsvc = self.engine.virtual.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        meta = vsvc["metadata"]
        if (vsvc.get("spec") or {}).get("clusterIP") == want:
            return
        fresh = copy.deepcopy(vsvc)
        fresh.pop("status", None)
        for key in _SERVER_FIELDS:
            fresh["metadata"].pop(key, None)
        fresh["spec"]["clusterIP"] = want
        fresh["spec"]["clusterIPs"] = (hsvc.get("spec") or {}).get("clusterIPs") or [want]
        for port in fresh["spec"].get("ports") or []:
            port.pop("nodePort", None)
        self.engine.virtual.delete(path, uid=meta["uid"])
        try:
            created = self.engine.virtual.create(f"/api/v1/namespaces/{ns}/services", fresh)
        except ApiError as exc:
            # The IP is taken inside the virtual cluster (or the CIDRs differ): keep the
            # virtual IP of its own rather than losing the service.
            log.warning("service %s/%s: cannot take host IP %s: %s", ns, name, want, exc)
            fresh["spec"].pop("clusterIP")
            fresh["spec"].pop("clusterIPs")
            created = self.engine.virtual.create(f"/api/v1/namespaces/{ns}/services", fresh)
        # The host copy now belongs to the new virtual object.
        hname = host_name(name, ns, self.engine.settings.name)
        self.engine.host.merge_patch(
            self.engine.host_ns_path("/api/v1", "services") + f"/{hname}",
            {"metadata": {"annotations": {OBJECT_UID: created["metadata"]["uid"]}}},
        )
