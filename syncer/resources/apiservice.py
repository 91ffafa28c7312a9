"""The vcluster's own ``kubernetes`` Service, as its pods and its clients see it (vcluster's
kubernetes-service and default-endpoint syncers).

The virtual API server gives its ``kubernetes`` Service the first address of the service range.
The range is the host's (Services keep one ClusterIP on both sides), so on the host that address
is the *host's* API server: a pod dialling ``kubernetes.default.svc`` would reach the host with
a vcluster token. So the virtual Service takes the ClusterIP of the chart's host Service
(``--owner-service``), which routes to this pod's API server; and its Endpoints and
EndpointSlice, which the API server does not write here (``--endpoint-reconciler-type=none``),
name this pod (``--api-endpoint``), as a real cluster's name its API servers.

Synced pods get that IP as ``KUBERNETES_SERVICE_HOST`` when the API server's certificate names
it (the plugin creates the host Service before the certificate); otherwise the host Service's
DNS name, which the certificate always names.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from ..core.controller import Engine
from ..kube import JSON, ApiError, Kube

log = logging.getLogger(__name__)

SERVICE = "/api/v1/namespaces/default/services/kubernetes"
ENDPOINTS = "/api/v1/namespaces/default/endpoints/kubernetes"
SLICE = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"
#: What the API server's own reconciler puts on them (kubernetes/pkg/controlplane/reconcilers).
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
SERVICE_NAME = "kubernetes.io/service-name"
VIRTUAL_PORT = 443  # the API server's for its kubernetes Service


def api_service(ip: str, current: Mapping[str, Any] | None, target_port: int) -> JSON:
    """The ``kubernetes`` Service with ClusterIP ``ip``: the ports and labels the API server
    gave it (its controller re-checks only those), or the API server's own when none exists."""
    spec: Mapping[str, Any] = (current or {}).get("spec") or {}
    ports = spec.get("ports") or [
        {"name": "https", "port": VIRTUAL_PORT, "protocol": "TCP", "targetPort": target_port}
    ]
    labels = ((current or {}).get("metadata") or {}).get("labels") or {
        "provider": "kubernetes",
        "component": "apiserver",
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": dict(labels)},
        "spec": {
            "type": spec.get("type") or "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "ports": [dict(p) for p in ports],
        },
    }


def _port(port: int) -> JSON:
    return {"name": "https", "port": port, "protocol": "TCP"}


def api_endpoints(ip: str, port: int) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {SKIP_MIRROR: "true"}},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [_port(port)]}],
    }


def api_endpoint_slice(ip: str, port: int) -> JSON:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {SERVICE_NAME: "kubernetes"},
        },
        "addressType": "IPv6" if ":" in ip else "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        "ports": [_port(port)],
    }


def _differs(
    desired: Mapping[str, Any], actual: Mapping[str, Any], fields: tuple[str, ...]
) -> bool:
    labels = (actual.get("metadata") or {}).get("labels") or {}
    want = desired["metadata"]["labels"]
    return any(labels.get(k) != v for k, v in want.items()) or any(
        desired.get(f) != actual.get(f) for f in fields
    )


def certificate_ips(kube: Kube, timeout: float = 5.0) -> set[str]:
    """The IP addresses the API server's serving certificate names (one TLS handshake)."""
    host, port, ctx, _ = kube.endpoint()
    if ctx is None:
        return set()
    with (
        socket.create_connection((host, port), timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        cert = tls.getpeercert() or {}
    names: Any = cert.get("subjectAltName", ())
    return {str(value) for kind, value in names if kind == "IP Address"}


class ApiService:
    """Keeps the virtual ``default/kubernetes`` Service, Endpoints and EndpointSlice."""

    name = "apiservice"
    recheck = 30.0  # seconds: a user who deleted or edited them gets them back

    def __init__(self, endpoint: tuple[str, int]) -> None:
        self.endpoint = endpoint
        self.ip = ""
        self.port = 0
        self._pod_address: tuple[str, int] | None = None
        self._checked = False

    def setup(self, engine: Engine) -> None:
        self.engine = engine
        spec = (engine.owner_service or {}).get("spec") or {}
        ip = str(spec.get("clusterIP") or "")
        self.ip = "" if ip == "None" else ip
        self.port = int((spec.get("ports") or [{}])[0].get("port") or 0)
        services = engine.virtual_informers.get("services")
        if services is not None:
            services.add_handler(self._changed)
        engine.enqueue(self.name, "default", "kubernetes")

    def _changed(self, _kind: str, obj: JSON) -> None:
        meta = obj.get("metadata") or {}
        if (meta.get("namespace"), meta.get("name")) == ("default", "kubernetes"):
            self.engine.enqueue(self.name, "default", "kubernetes")

    def pod_address(self) -> tuple[str, int] | None:
        """(IP, port) for synced pods' ``KUBERNETES_SERVICE_HOST``/``_PORT``: the host
        Service's IP when the certificate names it and its port is the virtual Service's (the
        API server's 443); None: use the DNS name. Asked once the API server has answered."""
        if not self._checked and self.ip:
            try:
                named = self.ip in certificate_ips(self.engine.virtual)
            except OSError as exc:
                log.info("API server certificate not read yet: %s", exc)
                return None
            self._checked = True
            if named and self.port == VIRTUAL_PORT:
                self._pod_address = (self.ip, self.port)
            log.info("pods reach the API server at %s", self._pod_address or "its DNS name")
        return self._pod_address

    def reconcile(self, namespace: str, name: str) -> None:
        if self.ip:
            self._service()
        ip, port = self.endpoint
        self._put(ENDPOINTS, api_endpoints(ip, port), ("subsets",))
        self._put(SLICE, api_endpoint_slice(ip, port), ("addressType", "endpoints", "ports"))
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
        current = self._get(SERVICE)
        if current is not None and (current.get("spec") or {}).get("clusterIP") == self.ip:
            return
        services = self.engine.virtual_informers.get("services")
        holder = next(
            (
                s
                for s in (services.items() if services is not None else [])
                if (s.get("spec") or {}).get("clusterIP") == self.ip
                and (s["metadata"]["namespace"], s["metadata"]["name"]) != ("default", "kubernetes")
            ),
            None,
        )
        if holder is not None:  # the virtual allocator gave it away first: leave both be
            log.warning(
                "kubernetes Service keeps its own IP: %s is the virtual Service %s/%s's",
                self.ip,
                holder["metadata"]["namespace"],
                holder["metadata"]["name"],
            )
            return
        body = api_service(self.ip, current, self.endpoint[1])
        if current is not None:
            self.engine.virtual.delete(SERVICE, uid=current["metadata"]["uid"])
        # A 409 (the API server's controller re-created it first) retries from the top.
        self.engine.virtual.create("/api/v1/namespaces/default/services", body)
        log.info("kubernetes Service now at %s (the host Service's)", self.ip)

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
