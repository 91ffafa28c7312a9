"""Virtual pod -> host pod, the security gate in front of it, and status going back."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .metadata import host_metadata, json_copy, virtual_identity
from .names import host_name
from .pod_plan import MANAGED_ANNOTATIONS, managed_annotations
from .pod_refs import containers, translate_spec_refs
from .trust_bundles import bundle_key

SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_VOLUME_PREFIX = "kube-api-access-"
SA_KEYS = ("token", "ca.crt", "namespace")

# The host may lack the priority class / runtime overhead / scheduler, and its admission
# recomputes priority, preemptionPolicy and overhead (and rejects mismatching given values).
_DROPPED_SPEC = (
    "priorityClassName",
    "priority",
    "preemptionPolicy",
    "overhead",
    "schedulerName",
    "serviceAccountName",
    "serviceAccount",
)
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class PodContext:
    """What translate_pod needs to know about the virtual cluster as seen from the host."""

    vcluster: str
    host_namespace: str
    dns_ip: str
    api_host: str
    api_port: int
    service_account_secret: str
    #: Callers skip the pod_violations gate when set; translation itself is the same.
    allow_privileged: bool = False
    cluster_domain: str = "cluster.local"
    #: Handler of each virtual RuntimeClass the pod may name (see _set_runtime_class).
    runtime_handlers: Mapping[str, str] = field(default_factory=dict)
    #: Variables of the virtual Services in the pod's namespace (service_env.py).
    service_env: Sequence[Mapping[str, str]] = ()


def _sa_volume_names(spec: dict[str, Any]) -> set[str]:
    names = {
        v["name"]
        for v in spec.get("volumes") or []
        if v["name"].startswith(SA_VOLUME_PREFIX) and "projected" in v
    }
    for _, container in containers(spec):
        for mount in container.get("volumeMounts") or []:
            if mount.get("mountPath", "").rstrip("/") == SA_MOUNT_PATH:
                names.add(mount["name"])
    return names


def _sa_volume(volume: dict[str, Any], secret: str) -> dict[str, Any]:
    items = [{"key": key, "path": key} for key in SA_KEYS]
    projected: dict[str, Any] = {"sources": [{"secret": {"name": secret, "items": items}}]}
    mode = (volume.get("projected") or {}).get("defaultMode")
    if mode is not None:
        projected["defaultMode"] = mode
    return {"name": volume["name"], "projected": projected}


@dataclass(frozen=True)
class TokenSpec:
    """One ServiceAccount token a host pod gets from its token Secret, requested by the syncer
    from the virtual API server for the virtual pod (the host kubelet must never mint one)."""

    key: str  # key in the pod's token Secret
    audience: str  # "": the virtual API server's own audience
    seconds: int  # requested lifetime


#: The key of the standard token (the kube-api-access volume's "token").
DEFAULT_TOKEN_KEY = "token"
_MIN_TOKEN_SECONDS = 600  # what the API server accepts at least (ServiceAccountTokenProjection)


def _token_key(volume: str, index: int) -> str:
    return f"token.{volume}.{index}"


@dataclass(frozen=True)
class CertSpec:
    """One projected ``podCertificate`` source: the syncer makes the key, asks the virtual
    cluster's signer with a PodCertificateRequest, and writes key and chain to the Secret."""

    prefix: str  # keys "<prefix>.bundle", ".key", ".chain" in the pod's token Secret
    signer: str
    key_type: str
    max_seconds: int | None
    user_annotations: Mapping[str, str] = field(default_factory=dict)


# podCertificate fields naming a file -> suffix of its key in the Secret.
_CERT_FILES = (
    ("credentialBundlePath", "bundle"),
    ("keyPath", "key"),
    ("certificateChainPath", "chain"),
)


def _cert_key(volume: str, index: int) -> str:
    return f"cert.{volume}.{index}"


def cert_specs(pod: Mapping[str, Any]) -> list[CertSpec]:
    """The pod certificates a pod's host copy needs, one per projected source."""
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        for i, source in enumerate((volume.get("projected") or {}).get("sources") or []):
            cert = source.get("podCertificate")
            if cert is not None:
                out.append(
                    CertSpec(
                        _cert_key(volume["name"], i),
                        cert["signerName"],
                        cert.get("keyType") or "ECDSAP256",
                        cert.get("maxExpirationSeconds"),
                        dict(cert.get("userAnnotations") or {}),
                    )
                )
    return out


def token_specs(pod: Mapping[str, Any], default_seconds: int) -> list[TokenSpec]:
    """The tokens a pod's host copy needs: the standard one if it mounts the ServiceAccount
    volume, and one per projected ``serviceAccountToken`` source (audience, lifetime)."""
    spec: dict[str, Any] = pod.get("spec") or {}
    sa_volumes = _sa_volume_names(spec)
    out = [TokenSpec(DEFAULT_TOKEN_KEY, "", default_seconds)] if sa_volumes else []
    for volume in spec.get("volumes") or []:
        if volume["name"] in sa_volumes:
            continue
        for i, source in enumerate((volume.get("projected") or {}).get("sources") or []):
            token = source.get("serviceAccountToken")
            if token is not None:
                seconds = max(int(token.get("expirationSeconds") or 3600), _MIN_TOKEN_SECONDS)
                out.append(
                    TokenSpec(_token_key(volume["name"], i), token.get("audience") or "", seconds)
                )
    return out


def _api_env(host: str, port: int) -> list[dict[str, str]]:
    # All variables the kubelet injects for the "kubernetes" service; the host's point at the
    # host API server. Kept first so user variables can still expand $(KUBERNETES_...).
    address = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
    tcp = f"KUBERNETES_PORT_{port}_TCP"
    values = {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": address,
        tcp: address,
        f"{tcp}_PROTO": "tcp",
        f"{tcp}_PORT": str(port),
        f"{tcp}_ADDR": host,
    }
    return [{"name": name, "value": value} for name, value in values.items()]


def _set_env(
    container: dict[str, Any],
    api_env: list[dict[str, str]],
    service_env: Sequence[Mapping[str, str]],
) -> None:
    """The API server's variables first (they replace the container's own), then the
    services' unless the container sets one itself (the kubelet's precedence), then the
    container's: each may expand ``$(...)`` of those before it."""
    names = {e["name"] for e in api_env}
    user = [e for e in container.get("env") or [] if e.get("name") not in names]
    taken = names | {e.get("name") for e in user}
    services = [dict(e) for e in service_env if e["name"] not in taken]
    container["env"] = [dict(e) for e in api_env] + services + user


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _set_dns(spec: dict[str, Any], namespace: str, ctx: PodContext) -> None:
    if not ctx.dns_ip:  # no DNS service in the virtual cluster (yet): keep the pod's policy
        return
    policy = spec.get("dnsPolicy", "ClusterFirst")
    # ClusterFirst on the host network means the node's DNS, exactly as on a real cluster.
    if not (
        policy == "ClusterFirstWithHostNet"
        or (policy == "ClusterFirst" and not spec.get("hostNetwork"))
    ):
        return
    user = spec.get("dnsConfig") or {}
    domain = ctx.cluster_domain
    options = {"ndots": {"name": "ndots", "value": "5"}}
    options |= {option["name"]: option for option in user.get("options") or []}
    searches = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]
    spec["dnsPolicy"] = "None"
    spec["dnsConfig"] = {
        "nameservers": _unique([ctx.dns_ip, *(user.get("nameservers") or [])]),
        "searches": _unique(searches + (user.get("searches") or [])),
        "options": list(options.values()),
    }


def _set_runtime_class(spec: dict[str, Any], ctx: PodContext) -> None:
    """A virtual RuntimeClass runs on the host RuntimeClass named after its handler (the usual
    naming: ``gvisor``/``runsc``-style classes are named as the runtime they select). The host
    admin decides which exist; a pod of the host namespace could name them anyway, so this
    widens nothing. A missing host class is the host's clear rejection, reported on the pod.
    The overhead and scheduling the virtual class added were dropped or are kept as the
    virtual pod's; the host's admission adds its own class's."""
    name = spec.get("runtimeClassName")
    if name and ctx.runtime_handlers.get(name):
        spec["runtimeClassName"] = ctx.runtime_handlers[name]


def translate_pod(pod: Mapping[str, Any], ctx: PodContext) -> dict[str, Any]:
    """The host pod for a virtual pod (call pod_violations first; this does not refuse)."""
    namespace, name = virtual_identity(pod)
    spec: dict[str, Any] = json_copy(pod.get("spec") or {})

    def ref(target: str) -> str:
        return host_name(target, namespace, ctx.vcluster)

    def token_source(volume: str, index: int, source: dict[str, Any]) -> dict[str, Any]:
        if "serviceAccountToken" in source:
            path = source["serviceAccountToken"]["path"]
            items = [{"key": _token_key(volume, index), "path": path}]
        elif "clusterTrustBundle" in source:
            path = source["clusterTrustBundle"]["path"]
            items = [{"key": bundle_key(volume, index), "path": path}]
        else:
            cert = source["podCertificate"]
            prefix = _cert_key(volume, index)
            items = [
                {"key": f"{prefix}.{suffix}", "path": cert[field]}
                for field, suffix in _CERT_FILES
                if cert.get(field)
            ]
        return {"secret": {"name": ctx.service_account_secret, "items": items}}

    translate_spec_refs(spec, namespace, ref, token_source)
    # Replaced after the renames: the replacement already names a host Secret.
    sa_volumes = _sa_volume_names(spec)
    if "volumes" in spec:
        spec["volumes"] = [
            _sa_volume(v, ctx.service_account_secret) if v["name"] in sa_volumes else v
            for v in spec["volumes"]
        ]
    for key in _DROPPED_SPEC:
        spec.pop(key, None)
    _set_runtime_class(spec, ctx)
    spec["automountServiceAccountToken"] = False
    spec["enableServiceLinks"] = False
    api_env = _api_env(ctx.api_host, ctx.api_port)
    for _, container in containers(spec):
        _set_env(container, api_env, ctx.service_env)
    _set_dns(spec, namespace, ctx)
    # Otherwise the kubelet would use the translated host name; truncated the kubelet's way.
    hostname = name[:63].rstrip("-.")
    if "hostname" not in spec and _DNS_LABEL_RE.match(hostname):
        spec["hostname"] = hostname
    metadata = host_metadata(pod, "Pod", ctx.host_namespace, ctx.vcluster)
    metadata["annotations"][MANAGED_ANNOTATIONS] = managed_annotations(metadata["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
