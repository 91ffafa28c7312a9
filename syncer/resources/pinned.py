"""Virtual Services served by this pod through a host Service the chart made (vcluster's
kubernetes-service and embedded-CoreDNS syncers): the vcluster's ``default/kubernetes`` (its
API server) and, with ``--dns-host-service``, its ``kube-system/kube-dns`` (CoreDNS in this pod).

Each takes the ClusterIP of its host Service, which routes to this pod; its Endpoints and
EndpointSlice, written here, name this pod. Pods dialling the virtual IP reach the host Service,
and clients reading the endpoints see this pod, as on a real cluster. Nothing of these is
synced down (``Engine.pinned``): the host side already exists.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.controller import Engine
from ..kube import JSON, ApiError

log = logging.getLogger(__name__)

#: What the API server's own reconciler puts on them (kubernetes/pkg/controlplane/reconcilers).
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
SERVICE_NAME = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Pin:
    """One virtual Service and the ports it serves: ``ports`` are its Service ports; the
    endpoints serve each at the endpoint's own port (its ``targetPort``)."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    ports: tuple[Mapping[str, Any], ...]

    @property
    def service_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/services/{self.name}"

    @property
    def endpoints_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/endpoints/{self.name}"

    @property
    def slice_path(self) -> str:
        return f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices/{self.name}"


def dns_pin(service: str, port: int) -> Pin:
    """The vcluster's DNS Service (``namespace/name``), as kubeadm's kube-dns: 53 over UDP and
    TCP, to CoreDNS's ``port``."""
    namespace, _, name = service.partition("/")
    return Pin(
        namespace,
        name,
        {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
        (
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": port},
        ),
    )


def pinned_service(pin: Pin, ip: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": pin.name, "namespace": pin.namespace, "labels": dict(pin.labels)},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "ports": [dict(p) for p in pin.ports],
        },
    }


def _endpoint_ports(pin: Pin, port: int) -> list[JSON]:
    return [
        {"name": p["name"], "port": port, "protocol": p.get("protocol", "TCP")} for p in pin.ports
    ]


def pinned_endpoints(pin: Pin, ip: str, port: int) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": pin.name,
            "namespace": pin.namespace,
            "labels": {SKIP_MIRROR: "true"},
        },
        "subsets": [{"addresses": [{"ip": ip}], "ports": _endpoint_ports(pin, port)}],
    }


def pinned_slice(pin: Pin, ip: str, port: int) -> JSON:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": pin.name,
            "namespace": pin.namespace,
            "labels": {SERVICE_NAME: pin.name},
        },
        "addressType": "IPv6" if ":" in ip else "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        "ports": _endpoint_ports(pin, port),
    }


def _differs(
    desired: Mapping[str, Any], actual: Mapping[str, Any], fields: tuple[str, ...]
) -> bool:
    labels = (actual.get("metadata") or {}).get("labels") or {}
    want = desired["metadata"]["labels"]
    return any(labels.get(k) != v for k, v in want.items()) or any(
        desired.get(f) != actual.get(f) for f in fields
    )


class PinnedService:
    """Keeps one pinned virtual Service, its Endpoints and its EndpointSlice. ``host_service``
    names the host Service whose IP it takes ("" with ``ip`` given)."""

    recheck = 30.0  # seconds: a user who deleted or edited them gets them back

    def __init__(
        self, pin: Pin, endpoint: tuple[str, int], host_service: str = "", name: str = ""
    ) -> None:
        self.pin = pin
        self.endpoint = endpoint
        self.host_service = host_service
        self.name = name or f"pinned-{pin.namespace}-{pin.name}"
        self.ip = ""

    def setup(self, engine: Engine) -> None:
        self.engine = engine
        engine.pinned.add((self.pin.namespace, self.pin.name))
        services = engine.virtual_informers.get("services")
        if services is not None:
            services.add_handler(self._changed)
        engine.enqueue(self.name, self.pin.namespace, self.pin.name)

    def _changed(self, _kind: str, obj: JSON) -> None:
        meta = obj.get("metadata") or {}
        if (meta.get("namespace"), meta.get("name")) == (self.pin.namespace, self.pin.name):
            self.engine.enqueue(self.name, self.pin.namespace, self.pin.name)

    def desired_service(self, current: JSON | None) -> JSON:
        return pinned_service(self.pin, self.ip)

    def _host_ip(self) -> str:
        """The host Service's ClusterIP (read once; an error retries the reconcile)."""
        path = self.engine.host_ns_path("/api/v1", "services") + f"/{self.host_service}"
        ip = str((self.engine.host.get(path).get("spec") or {}).get("clusterIP") or "")
        if not ip or ip == "None":
            raise ValueError(f"host Service {self.host_service} has no ClusterIP")
        return ip

    def reconcile(self, namespace: str, name: str) -> None:
        if not self.ip and self.host_service:
            self.ip = self._host_ip()
        if self.ip:
            self._service()
        ip, port = self.endpoint
        pin = self.pin
        self._put(pin.endpoints_path, pinned_endpoints(pin, ip, port), ("subsets",))
        self._put(
            pin.slice_path, pinned_slice(pin, ip, port), ("addressType", "endpoints", "ports")
        )
        self.engine.queue.add_after((self.name, namespace, name), self.recheck)

    def _get(self, path: str) -> JSON | None:
        try:
            found: JSON = self.engine.virtual.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def _service(self) -> None:
        pin = self.pin
        current = self._get(pin.service_path)
        if current is not None and (current.get("spec") or {}).get("clusterIP") == self.ip:
            return
        services = self.engine.virtual_informers.get("services")
        holder = next(
            (
                s
                for s in (services.items() if services is not None else [])
                if (s.get("spec") or {}).get("clusterIP") == self.ip
                and (s["metadata"]["namespace"], s["metadata"]["name"]) != (pin.namespace, pin.name)
            ),
            None,
        )
        if holder is not None:  # the virtual allocator gave it away first: leave both be
            log.warning(
                "%s/%s Service keeps its own IP: %s is the virtual Service %s/%s's",
                pin.namespace,
                pin.name,
                self.ip,
                holder["metadata"]["namespace"],
                holder["metadata"]["name"],
            )
            return
        body = self.desired_service(current)
        if current is not None:
            self.engine.virtual.delete(pin.service_path, uid=current["metadata"]["uid"])
        # A 409 (another writer re-created it first) retries from the top.
        self.engine.virtual.create(f"/api/v1/namespaces/{pin.namespace}/services", body)
        log.info("%s/%s Service now at %s (the host Service's)", pin.namespace, pin.name, self.ip)

    def _put(self, path: str, desired: JSON, fields: tuple[str, ...]) -> None:
        current = self._get(path)
        if current is None:
            self.engine.virtual.create(path.rsplit("/", 1)[0], desired)
        elif _differs(desired, current, fields):
            desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            desired["metadata"]["labels"] = {
                **((current.get("metadata") or {}).get("labels") or {}),
                **desired["metadata"]["labels"],
            }
            self.engine.virtual.replace(path, desired)
