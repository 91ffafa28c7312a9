"""Assemble the engine with the resources the settings enable."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from .core.controller import Engine
from .etcd import Etcd
from .kube import JSON, Kube
from .reset.service import Resetter
from .resources.addresses import AddressPolicy
from .resources.apiservice import ApiService
from .resources.events import EventRecorder, Events
from .resources.generic import DownSync, keep_service_ips
from .resources.namespaces import DefaultServiceAccounts
from .resources.nodes import Nodes
from .resources.pinned import PinnedService, dns_pin
from .resources.pods import Pods, RefIndex
from .resources.services import ServiceIPs
from .settings import Settings
from .translate import services as tr


def build(
    settings: Settings,
    virtual: Kube,
    host: Kube,
    *,
    kubelet_endpoint: tuple[str, int] | None = None,
    kubelet_version: str = "fake",
) -> Engine:
    """``kubelet_endpoint``: where the fake nodes' kubelet API is served (their address)."""
    engine = Engine(settings, virtual, host)
    engine.recorder = EventRecorder(engine)
    refs = RefIndex()
    enabled = settings.resources
    configs: dict[str, DownSync] = {}

    def used(resource: str) -> Callable[[JSON], bool]:
        def wanted(obj: JSON) -> bool:
            if settings.sync_all_configs:
                return True
            meta = obj["metadata"]
            return refs.used(resource, meta["namespace"], meta["name"])

        return wanted

    if "configmaps" in enabled:
        configs["configmaps"] = DownSync(
            "configmaps",
            "/api/v1",
            "ConfigMap",
            tr.translate_configmap,
            ("data", "binaryData"),
            wanted=used("configmaps"),
        )
    if "secrets" in enabled:
        configs["secrets"] = DownSync(
            "secrets",
            "/api/v1",
            "Secret",
            tr.translate_secret,
            ("data", "type"),
            wanted=used("secrets"),
        )
    if "persistentvolumeclaims" in enabled:
        configs["persistentvolumeclaims"] = DownSync(
            "persistentvolumeclaims",
            "/api/v1",
            "PersistentVolumeClaim",
            tr.translate_pvc,
            ("spec",),
            status_back=True,
        )
    for sync in configs.values():
        engine.add(sync)
    api = None
    if settings.api_endpoint is not None and "services" in enabled:
        api = ApiService(settings.api_endpoint)
        engine.add(api)
    if settings.dns_endpoint is not None and "services" in enabled:
        pin = dns_pin(settings.dns_service, settings.dns_endpoint[1])
        engine.add(PinnedService(pin, settings.dns_endpoint, settings.dns_host_service))
    if "pods" in enabled:
        engine.add(Pods(refs, configs, api_address=api.pod_address if api else None))
        engine.add(DefaultServiceAccounts())  # pods in a new namespace need its account
    addresses = AddressPolicy(settings.allowed_endpoint_cidrs)
    engine.add(addresses)  # after Pods: it listens to the host pods informer
    if "services" in enabled:
        ips = ServiceIPs(engine)
        engine.add(
            DownSync(
                "services",
                "/api/v1",
                "Service",
                partial(tr.translate_service, external_ips=settings.allow_external_ips),
                ("spec",),
                wanted=ips.wanted,
                keep_from_host=keep_service_ips,
                after_sync=ips.align,
                on_invalid=tr.without_refused,
            )
        )
    if "endpoints" in enabled:
        engine.add(
            DownSync(
                "endpoints",
                "/api/v1",
                "Endpoints",
                addresses.endpoints(tr.translate_endpoints),
                ("subsets",),
                wanted=lambda ep: ServiceIPs.selectorless(engine, ep),
            )
        )
        # Slices a user writes for a selector-less Service (the controllers' own are not).
        engine.add(
            DownSync(
                "endpointslices",
                "/apis/discovery.k8s.io/v1",
                "EndpointSlice",
                addresses.slices(tr.translate_endpoint_slice),
                ("addressType", "endpoints", "ports"),
                wanted=lambda eps: ServiceIPs.selectorless_slice(engine, eps),
            )
        )
    if "ingresses" in enabled:
        engine.add(
            DownSync(
                "ingresses",
                "/apis/networking.k8s.io/v1",
                "Ingress",
                tr.translate_ingress,
                ("spec",),
                status_back=True,
            )
        )
    if "nodes" in enabled and "pods" in enabled:
        own = (settings.own_node, settings.own_node_ip)
        engine.add(Nodes(kubelet_endpoint, kubelet_version, own))
    if "events" in enabled:
        engine.add(Events())
    etcd = Etcd(settings.etcd_url) if settings.etcd_url else None
    Resetter(engine, etcd, settings.etcd_prefix).setup()
    return engine
