"""Virtual Services, Endpoints, Ingresses, ConfigMaps, Secrets and PVCs -> host objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .metadata import host_metadata, json_copy, virtual_identity
from .names import host_name, translate_selector

SA_TOKEN_TYPE = "kubernetes.io/service-account-token"


def _base(obj: Mapping[str, Any], kind: str, api_version: str, ns: str, vc: str) -> dict[str, Any]:
    return {
        "apiVersion": obj.get("apiVersion", api_version),
        "kind": kind,
        "metadata": host_metadata(obj, kind, ns, vc),
    }


def translate_service(
    svc: Mapping[str, Any], host_namespace: str, vcluster: str, *, external_ips: bool = False
) -> dict[str, Any]:
    """Host Service: selector scoped to the virtual namespace, same ClusterIP as the virtual one.

    The virtual API server allocates from the host's service CIDR and node-port range, so
    asking the host for the same address and node ports usually works and the virtual Service
    never changes (a client keeps the node port its create returned); when the host refuses
    one (taken, or another range), ``without_refused`` lets the host choose and the virtual
    Service takes the host's.
    """
    namespace, _ = virtual_identity(svc)
    spec: dict[str, Any] = json_copy(svc.get("spec") or {})
    # Empty and absent selectors are the same after storage: selector-less, endpoints by hand.
    if spec.get("selector"):
        spec["selector"] = translate_selector(spec["selector"], namespace)
    else:
        spec.pop("selector", None)
    spec.pop("healthCheckNodePort", None)  # the host's to allocate
    if not external_ips:
        # On the host, kube-proxy would send traffic for these IPs — any IP, cluster-wide — to
        # this Service (CVE-2020-8554): a tenant must not get that by default.
        spec.pop("externalIPs", None)
        if spec.get("type", "ClusterIP") == "ClusterIP":
            # Defaulted because of those IPs; without them the host refuses it.
            spec.pop("externalTrafficPolicy", None)
    node_ports = spec.get("type") in ("NodePort", "LoadBalancer")
    for port in spec.get("ports") or []:
        if not node_ports:  # left from an earlier type; the host refuses them
            port.pop("nodePort", None)
    return {**_base(svc, "Service", "v1", host_namespace, vcluster), "spec": spec}


def without_refused(desired: Mapping[str, Any], error_message: str) -> dict[str, Any] | None:
    """The host Service again with the host choosing what it refused: the ClusterIP when
    ``error_message`` names spec.clusterIP(s), the node ports when it names a nodePort; None
    when there is nothing to drop or the refusal was about something else."""
    spec = desired.get("spec") or {}
    out: dict[str, Any] = json_copy(dict(desired))
    dropped = False
    ip = spec.get("clusterIP")
    if ip and ip != "None" and "clusterIP" in error_message:
        out["spec"].pop("clusterIP", None)
        out["spec"].pop("clusterIPs", None)
        dropped = True
    if "nodePort" in error_message:
        for port in out["spec"].get("ports") or []:
            dropped = port.pop("nodePort", None) is not None or dropped
    return out if dropped else None


def translate_endpoints(
    ep: Mapping[str, Any], host_namespace: str, vcluster: str
) -> dict[str, Any]:
    """Host Endpoints of a selector-less Service (same host name as the Service)."""
    subsets = json_copy(ep.get("subsets") or [])
    for subset in subsets:
        # targetRef names a virtual object the host does not know.
        for address in (subset.get("addresses") or []) + (subset.get("notReadyAddresses") or []):
            address.pop("targetRef", None)
    out = _base(ep, "Endpoints", "v1", host_namespace, vcluster)
    if subsets:
        out["subsets"] = subsets
    return out


#: EndpointSlice labels (discovery.k8s.io).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_SLICE_LABEL = "endpointslice.kubernetes.io/managed-by"
#: Slices these controllers write in the vcluster are not copied: the host's own write them
#: for the host copies (of selected pods, and of the Endpoints the syncer copies).
CONTROLLER_SLICES = frozenset(
    {"endpointslice-controller.k8s.io", "endpointslicemirroring-controller.k8s.io"}
)
SLICE_MANAGER = "syncer.vc.pytest-vcluster.io"


def user_slice_service(eps: Mapping[str, Any]) -> str:
    """The Service an EndpointSlice a user wrote serves ("" when a controller wrote it, or it
    names none): the slices the syncer copies, with the selector-less Service they serve."""
    labels = (eps.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY_SLICE_LABEL) in CONTROLLER_SLICES:
        return ""
    return str(labels.get(SERVICE_NAME_LABEL) or "")


def translate_endpoint_slice(
    eps: Mapping[str, Any], host_namespace: str, vcluster: str
) -> dict[str, Any]:
    """Host EndpointSlice of a selector-less Service: the host Service's name in its
    service-name label (kube-proxy finds it by that), no targetRefs (virtual objects), and
    managed by the syncer (the host's controllers leave it alone)."""
    namespace, _ = virtual_identity(eps)
    out = _base(eps, "EndpointSlice", "discovery.k8s.io/v1", host_namespace, vcluster)
    service = user_slice_service(eps)
    out["metadata"]["labels"][SERVICE_NAME_LABEL] = host_name(service, namespace, vcluster)
    out["metadata"]["labels"][MANAGED_BY_SLICE_LABEL] = SLICE_MANAGER
    endpoints = json_copy(eps.get("endpoints") or [])
    for endpoint in endpoints:
        endpoint.pop("targetRef", None)
    out["addressType"] = eps.get("addressType", "IPv4")
    out["endpoints"] = endpoints
    out["ports"] = json_copy(eps.get("ports") or [])
    return out


def _rename_backend(backend: dict[str, Any] | None, namespace: str, vcluster: str) -> None:
    service = (backend or {}).get("service")
    if service and service.get("name"):
        service["name"] = host_name(service["name"], namespace, vcluster)


def translate_ingress(ing: Mapping[str, Any], host_namespace: str, vcluster: str) -> dict[str, Any]:
    """Host Ingress: backend Service names and TLS Secret names translated."""
    namespace, _ = virtual_identity(ing)
    spec: dict[str, Any] = json_copy(ing.get("spec") or {})
    _rename_backend(spec.get("defaultBackend"), namespace, vcluster)
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            _rename_backend(path.get("backend"), namespace, vcluster)
    for tls in spec.get("tls") or []:
        if tls.get("secretName"):
            tls["secretName"] = host_name(tls["secretName"], namespace, vcluster)
    base = _base(ing, "Ingress", "networking.k8s.io/v1", host_namespace, vcluster)
    return {**base, "spec": spec}


def _copy_fields(obj: Mapping[str, Any], out: dict[str, Any], fields: tuple[str, ...]) -> None:
    for field in fields:
        if field in obj:
            out[field] = json_copy(obj[field])


def translate_configmap(
    cm: Mapping[str, Any], host_namespace: str, vcluster: str
) -> dict[str, Any]:
    """Host ConfigMap: data, binaryData and immutable copied."""
    out = _base(cm, "ConfigMap", "v1", host_namespace, vcluster)
    _copy_fields(cm, out, ("data", "binaryData", "immutable"))
    return out


def translate_secret(
    secret: Mapping[str, Any], host_namespace: str, vcluster: str
) -> dict[str, Any]:
    """Host Secret: data, stringData, type and immutable copied."""
    out = _base(secret, "Secret", "v1", host_namespace, vcluster)
    _copy_fields(secret, out, ("data", "stringData", "type", "immutable"))
    # On the host this type would make the token controller manage (or delete) the Secret for
    # a host ServiceAccount; the virtual token is plain data there.
    if out.get("type") == SA_TOKEN_TYPE:
        out["type"] = "Opaque"
    return out


def translate_pvc(pvc: Mapping[str, Any], host_namespace: str, vcluster: str) -> dict[str, Any]:
    """Host PersistentVolumeClaim: spec without volumeName, same-namespace data sources renamed."""
    namespace, _ = virtual_identity(pvc)
    spec: dict[str, Any] = json_copy(pvc.get("spec") or {})
    # The host binds its own PersistentVolume.
    spec.pop("volumeName", None)
    for key in ("dataSource", "dataSourceRef"):
        source = spec.get(key)
        # A cross-namespace dataSourceRef points outside this virtual namespace: kept as is.
        if source and source.get("name") and not source.get("namespace"):
            source["name"] = host_name(source["name"], namespace, vcluster)
    out = _base(pvc, "PersistentVolumeClaim", "v1", host_namespace, vcluster)
    return {**out, "spec": spec}
