"""Command-line settings of ``python -m syncer``."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .constants import DEFAULT_ISSUER
from .translate.endpoint_policy import Network, parse_cidrs

#: Resources the syncer knows, with their default on/off state (as the original virtualcluster).
RESOURCES: dict[str, bool] = {
    "pods": True,
    "services": True,
    "endpoints": True,
    "configmaps": True,
    "secrets": True,
    "persistentvolumeclaims": True,
    "ingresses": True,
    "events": True,
    "nodes": True,
}


def parse_sync(spec: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(turned on, turned off) from ``["ingresses", "-events"]`` (vcluster's ``--sync``
    syntax: a name turns a resource on, ``-name`` off); ValueError names what is accepted."""
    on: set[str] = set()
    off: set[str] = set()
    for item in spec:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a resource name")
        name = item.strip().removeprefix("-").removeprefix("+")
        if name not in RESOURCES:
            raise ValueError(
                f"unknown resource {item!r}; accepted: {', '.join(RESOURCES)} "
                "(a leading '-' turns one off)"
            )
        (off if item.strip().startswith("-") else on).add(name)
    both = on & off
    if both:
        raise ValueError(f"{', '.join(sorted(both))} turned both on and off")
    return frozenset(on), frozenset(off)


def sync_flags(spec: Iterable[str]) -> tuple[str, ...]:
    """The syncer's flags for a ``sync=`` list (see ``parse_sync``)."""
    on, off = parse_sync(spec)
    flags = []
    if on:
        flags.append(f"--enable-sync-resources={','.join(sorted(on))}")
    if off:
        flags.append(f"--disable-sync-resources={','.join(sorted(off))}")
    return tuple(flags)


@dataclass(frozen=True)
class Settings:
    name: str
    host_namespace: str
    virtual_kubeconfig: str
    host_kubeconfig: str | None = None  # None: in-cluster config
    host_context: str | None = None
    resources: frozenset[str] = field(default_factory=lambda: frozenset(RESOURCES))
    sync_all_configs: bool = False  # all ConfigMaps/Secrets, not only those pods use
    allow_privileged: bool = False
    api_service_host: str = "kubernetes.default.svc"
    api_service_port: int = 443
    dns_service: str = "kube-system/kube-dns"
    cluster_domain: str = "cluster.local"
    workers: int = 64
    update_workers: int = 8  # of the workers, at most this many on updates at once
    health_address: str = "127.0.0.1:0"
    token_seconds: int = 3600
    token_refresh: float = 0.8  # re-request a pod's token at this fraction of its lifetime
    early_tokens: bool = False  # tokens before the binding (no node claims); see --early-tokens
    # The virtual API server's ServiceAccount signing key: the syncer signs pods' tokens itself
    # (resources/token_signer.py) instead of a TokenRequest each; "" = TokenRequests.
    token_signing_key: str = ""
    token_issuer: str = DEFAULT_ISSUER  # that API server's --service-account-issuer
    token_audiences: tuple[str, ...] = ()  # its --api-audiences; () = the issuer, its default
    bootstrap_dir: str | None = None  # manifests created in the virtual cluster (CoreDNS)
    # The fake nodes' kubelet API (logs, exec, attach, port-forward); "" = not served.
    kubelet_address: str = ""
    kubelet_cert_file: str = ""
    kubelet_key_file: str = ""
    kubelet_client_ca_file: str = ""
    kubelet_client_cert_file: str = ""
    simulated_host: bool = False  # host pods have no containers (kwok): say so, never hang
    # A host Service (the chart's API Service) that owns every host object the syncer makes,
    # so `helm uninstall` alone removes them (the host's garbage collector follows).
    owner_service: str = ""
    # Where the owner Service routes (this pod's API server): the vcluster's own `kubernetes`
    # Service takes the owner Service's IP and these Endpoints (resources/apiservice.py).
    api_endpoint: tuple[str, int] | None = None
    # CoreDNS in this pod (the chart's coredns.embedded): the vcluster's DNS Service
    # (--dns-service) takes this host Service's IP and these Endpoints (resources/pinned.py).
    dns_host_service: str = ""
    dns_endpoint: tuple[str, int] | None = None
    # This pod's host node and its IP: a fake node for it from the start (resources/nodes.py).
    own_node: str = ""
    own_node_ip: str = ""
    # Addresses a selector-less Service's Endpoints may name besides this vcluster's pods.
    allowed_endpoint_cidrs: tuple[Network, ...] = ()
    allow_external_ips: bool = False  # copy a Service's externalIPs to the host (CVE-2020-8554)
    allow_external_name: bool = False  # copy ExternalName Services to the host
    # The vcluster's etcd (JSON gateway) and its API server's key prefix: snapshot and reset.
    etcd_url: str = ""
    etcd_prefix: str = "/registry"


def _resources(value: str) -> set[str]:
    names = {v.strip() for v in value.split(",") if v.strip()}
    unknown = names - set(RESOURCES)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown resource(s) {', '.join(sorted(unknown))}; known: {', '.join(RESOURCES)}"
        )
    return names


def _cidrs(value: str) -> tuple[Network, ...]:
    try:
        return parse_cidrs(v for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _endpoint(value: str) -> tuple[str, int] | None:
    """``IP:PORT`` (``[IPv6]:PORT`` too) as a pair; None when empty or not of that form."""
    host, sep, port = value.rpartition(":")
    if not (sep and port.isdigit() and host):
        return None
    return host.strip("[]"), int(port)


def parse(argv: Sequence[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m syncer", description=__doc__)
    p.add_argument("--name", required=True, help="the virtual cluster's name")
    p.add_argument("--host-namespace", required=True, help="host namespace to sync into")
    p.add_argument("--virtual-kubeconfig", required=True)
    p.add_argument("--host-kubeconfig", default=None, help="default: in-cluster config")
    p.add_argument("--host-context", default=None)
    # Repeatable (the chart's values and a marker's sync= may each pass one): they add up.
    p.add_argument("--enable-sync-resources", type=_resources, action="append", default=[])
    p.add_argument("--disable-sync-resources", type=_resources, action="append", default=[])
    p.add_argument("--sync-all-configmaps-secrets", action="store_true")
    p.add_argument("--allow-privileged", action="store_true")
    p.add_argument("--api-service-host", default="kubernetes.default.svc")
    p.add_argument("--api-service-port", type=int, default=443)
    p.add_argument("--dns-service", default="kube-system/kube-dns")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--workers", type=int, default=64)
    p.add_argument(
        "--update-workers",
        type=int,
        default=8,
        help="at most this many workers copy status/updates at once (0: all); creations "
        "are served first and may use every worker",
    )
    p.add_argument("--health-address", default="127.0.0.1:0")
    p.add_argument("--token-seconds", type=int, default=3600)
    p.add_argument("--token-refresh-fraction", type=float, default=0.8)
    p.add_argument(
        "--early-tokens",
        action="store_true",
        help="write a pod's tokens right after its host copy, before the host binds it: its "
        "containers may start sooner, but the tokens do not name the node (a TokenReview "
        "shows no authentication.kubernetes.io/node-name)",
    )
    p.add_argument(
        "--token-signing-key",
        default="",
        help="the virtual API server's --service-account-signing-key-file: sign pods' tokens "
        "here, as its TokenRequest would, instead of one request per pod",
    )
    p.add_argument("--token-issuer", default=DEFAULT_ISSUER)
    p.add_argument(
        "--token-audiences",
        default="",
        help="the virtual API server's --api-audiences (comma-separated; default: the issuer)",
    )
    p.add_argument("--bootstrap-dir", default=None, help="create these *.yaml in the vcluster")
    p.add_argument(
        "--owner-service",
        default="",
        help="host Service (in --host-namespace) that owns every host object the syncer makes",
    )
    p.add_argument(
        "--allow-external-ips",
        action="store_true",
        help="copy Services' externalIPs to the host (off: a tenant could take traffic for any IP)",
    )
    p.add_argument(
        "--allow-external-name",
        action="store_true",
        help="copy ExternalName Services to the host (off: the host's DNS and ingress "
        "controllers would follow a tenant's CNAME to any name)",
    )
    p.add_argument(
        "--allow-endpoint-cidrs",
        type=_cidrs,
        default=(),
        help="comma-separated CIDRs a selector-less Service's Endpoints/EndpointSlices may "
        "name on the host besides this vcluster's pods (default: none)",
    )
    p.add_argument(
        "--api-endpoint",
        default="",
        help="POD_IP:PORT of the virtual API server behind --owner-service: the vcluster's "
        "`kubernetes` Service gets that Service's ClusterIP and this as its endpoint",
    )
    p.add_argument(
        "--dns-host-service",
        default="",
        help="a host Service routing port 53 to CoreDNS in this pod: the vcluster's "
        "--dns-service gets its ClusterIP and --dns-endpoint as its endpoint",
    )
    p.add_argument("--dns-endpoint", default="", help="POD_IP:PORT of that CoreDNS")
    p.add_argument(
        "--own-node",
        default="",
        help="the host node this pod runs on: the vcluster shows it as a node from the start "
        "(CoreDNS runs here), as it shows every node a synced pod runs on",
    )
    p.add_argument("--own-node-ip", default="", help="that node's IP (its InternalIP)")
    p.add_argument(
        "--etcd-url",
        default="",
        help="the vcluster's etcd (http, JSON gateway): snapshot and reset answer through it "
        "(default: none, a reset request gets an error)",
    )
    p.add_argument("--etcd-prefix", default="/registry", help="its API server's --etcd-prefix")
    k = p.add_argument_group("kubelet API of the fake nodes")
    k.add_argument(
        "--kubelet-address",
        default="",
        help="IP:PORT to serve it on (port 0: any free one); the fake nodes advertise it",
    )
    k.add_argument("--kubelet-cert-file", default="", help="serving certificate (PEM)")
    k.add_argument("--kubelet-key-file", default="")
    k.add_argument("--kubelet-client-ca-file", default="", help="CA of the API server's cert")
    k.add_argument(
        "--kubelet-client-cert-file",
        default="",
        help="the virtual API server's kubelet client certificate: the only one accepted",
    )
    k.add_argument(
        "--simulated-host",
        action="store_true",
        help="host pods are simulated (kwok): logs/exec answer with a clear error",
    )
    a = p.parse_args(argv)
    if a.kubelet_address:
        missing = [
            f"--{n.replace('_', '-')}"
            for n in (
                "kubelet_cert_file",
                "kubelet_key_file",
                "kubelet_client_ca_file",
                "kubelet_client_cert_file",
            )
            if not getattr(a, n)
        ]
        if missing:
            p.error(f"--kubelet-address needs {', '.join(missing)}")
        kubelet = _endpoint(a.kubelet_address)
        if kubelet is None or kubelet[0] in ("0.0.0.0", "::"):
            p.error(
                f"--kubelet-address={a.kubelet_address}: expected IP:PORT with the IP the "
                "API server reaches (advertised as the fake nodes' Hostname address)"
            )
    api_endpoint = _endpoint(a.api_endpoint)
    if a.api_endpoint and (api_endpoint is None or not a.owner_service):
        p.error(
            f"--api-endpoint={a.api_endpoint}: expected IP:PORT of the API server's pod, "
            "with --owner-service naming the host Service in front of it"
        )
    dns_endpoint = _endpoint(a.dns_endpoint)
    if bool(a.dns_endpoint) != bool(a.dns_host_service) or (a.dns_endpoint and not dns_endpoint):
        p.error(
            f"--dns-endpoint={a.dns_endpoint!r} --dns-host-service={a.dns_host_service!r}: "
            "expected both or neither: IP:PORT of CoreDNS in this pod, and the host Service "
            "in front of it"
        )
    if "/" not in a.dns_service:
        p.error(f"--dns-service={a.dns_service}: expected NAMESPACE/NAME")
    enabled = {k for k, on in RESOURCES.items() if on}.union(*a.enable_sync_resources)
    disabled = set().union(*a.disable_sync_resources)
    return Settings(
        name=a.name,
        host_namespace=a.host_namespace,
        virtual_kubeconfig=a.virtual_kubeconfig,
        host_kubeconfig=a.host_kubeconfig,
        host_context=a.host_context,
        resources=frozenset(enabled - disabled),
        sync_all_configs=a.sync_all_configmaps_secrets,
        allow_privileged=a.allow_privileged,
        api_service_host=a.api_service_host,
        api_service_port=a.api_service_port,
        dns_service=a.dns_service,
        cluster_domain=a.cluster_domain,
        workers=a.workers,
        update_workers=a.update_workers,
        health_address=a.health_address,
        token_seconds=a.token_seconds,
        token_refresh=a.token_refresh_fraction,
        early_tokens=a.early_tokens,
        token_signing_key=a.token_signing_key,
        token_issuer=a.token_issuer,
        token_audiences=tuple(x.strip() for x in a.token_audiences.split(",") if x.strip()),
        bootstrap_dir=a.bootstrap_dir,
        kubelet_address=a.kubelet_address,
        kubelet_cert_file=a.kubelet_cert_file,
        kubelet_key_file=a.kubelet_key_file,
        kubelet_client_ca_file=a.kubelet_client_ca_file,
        kubelet_client_cert_file=a.kubelet_client_cert_file,
        simulated_host=a.simulated_host,
        owner_service=a.owner_service,
        api_endpoint=api_endpoint,
        dns_host_service=a.dns_host_service,
        dns_endpoint=dns_endpoint,
        own_node=a.own_node,
        own_node_ip=a.own_node_ip,
        allowed_endpoint_cidrs=a.allow_endpoint_cidrs,
        allow_external_ips=a.allow_external_ips,
        allow_external_name=a.allow_external_name,
        etcd_url=a.etcd_url,
        etcd_prefix=a.etcd_prefix,
    )
