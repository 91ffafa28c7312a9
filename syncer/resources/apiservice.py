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
DNS name, which the certificate always names. The Service, Endpoints and EndpointSlice are
kept as every pinned Service (``pinned.py``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from ..core.controller import Engine
from ..kube import JSON, Kube
from .pinned import Pin, PinnedService, pinned_endpoints, pinned_slice

log = logging.getLogger(__name__)

VIRTUAL_PORT = 443  # the API server's for its kubernetes Service
_LABELS = {"provider": "kubernetes", "component": "apiserver"}


def _pin(target_port: int) -> Pin:
    port = {"name": "https", "port": VIRTUAL_PORT, "protocol": "TCP", "targetPort": target_port}
    return Pin("default", "kubernetes", _LABELS, (port,))


def api_service(ip: str, current: Mapping[str, Any] | None, target_port: int) -> JSON:
    """The ``kubernetes`` Service with ClusterIP ``ip``: the ports and labels the API server
    gave it (its controller re-checks only those), or the API server's own when none exists."""
    spec: Mapping[str, Any] = (current or {}).get("spec") or {}
    labels = ((current or {}).get("metadata") or {}).get("labels") or _LABELS
    pin = _pin(target_port)
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
            "ports": [dict(p) for p in spec.get("ports") or pin.ports],
        },
    }


def api_endpoints(ip: str, port: int) -> JSON:
    return pinned_endpoints(_pin(port), ip, port)


def api_endpoint_slice(ip: str, port: int) -> JSON:
    return pinned_slice(_pin(port), ip, port)


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


class ApiService(PinnedService):
    """Keeps the virtual ``default/kubernetes`` Service, Endpoints and EndpointSlice, at the
    IP of the owner Service (read by the engine at start)."""

    def __init__(self, endpoint: tuple[str, int]) -> None:
        super().__init__(_pin(endpoint[1]), endpoint, name="apiservice")
        self.port = 0
        self._pod_address: tuple[str, int] | None = None
        self._checked = False

    def setup(self, engine: Engine) -> None:
        spec = (engine.owner_service or {}).get("spec") or {}
        ip = str(spec.get("clusterIP") or "")
        self.ip = "" if ip == "None" else ip
        self.port = int((spec.get("ports") or [{}])[0].get("port") or 0)
        super().setup(engine)

    def desired_service(self, current: JSON | None) -> JSON:
        return api_service(self.ip, current, self.endpoint[1])

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
