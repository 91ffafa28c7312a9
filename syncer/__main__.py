"""``python -m syncer``: run the syncer until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence

from . import bootstrap
from .app import build
from .core import dnsprobe
from .core.controller import Engine
from .core.metrics import serve
from .kube import ApiError, Kube
from .kubelet.server import KubeletConfig, KubeletServer
from .resources.pods import dns_service_ip
from .settings import Settings, parse


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    virtual = Kube.from_kubeconfig(settings.virtual_kubeconfig, name="virtual")
    host = Kube.from_kubeconfig(
        settings.host_kubeconfig, context=settings.host_context, name="host"
    )
    kubelet = None
    endpoint = None
    if settings.kubelet_address:
        address, _, port_text = settings.kubelet_address.rpartition(":")
        ip = address.strip("[]")
        kubelet = KubeletServer(
            KubeletConfig(
                listen_host=ip,
                listen_port=int(port_text),
                cert_file=settings.kubelet_cert_file,
                key_file=settings.kubelet_key_file,
                client_ca_file=settings.kubelet_client_ca_file,
                client_cert_file=settings.kubelet_client_cert_file,
                vcluster=settings.name,
                host_namespace=settings.host_namespace,
                simulated=settings.simulated_host,
            ),
            host,
        )
        endpoint = (ip, kubelet.start())
        print(f"syncer: kubelet API on {ip}:{endpoint[1]}", flush=True)
    engine = build(
        settings, virtual, host, kubelet_endpoint=endpoint, kubelet_version=_version(host)
    )
    engine.metrics.kubelet = kubelet
    engine.resolve_owner()
    server = serve(
        settings.health_address,
        engine.alive,
        engine.ready.is_set,
        engine.metrics,
        {"dns": lambda: dns_problem(settings, engine)},
    )
    # The port line lets a parent process find the health endpoint when it asked for port 0.
    host_, port = server.server_address[:2]
    print(f"syncer: health on {host_!s}:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine.start()
    if settings.bootstrap_dir:  # CoreDNS & co. (chart), created once the API server answers
        bootstrap.start(virtual, settings.bootstrap_dir, stop=stop)
    stop.wait()
    engine.stop()
    if kubelet is not None:
        kubelet.stop()
    server.shutdown()
    return 0


def dns_problem(settings: Settings, engine: Engine) -> str:
    """ "" when the vcluster's DNS Service answers a lookup from this pod's network (what a
    pod started now would get), else why not (``/readyz/dns``)."""
    ip = dns_service_ip(engine, settings.dns_service)
    if not ip:
        return f"no DNS Service {settings.dns_service} with a ClusterIP in the vcluster yet"
    # An answer in the pod network takes about a millisecond; a packet dropped before the
    # rules exist is asked again by the next poll rather than waited for.
    return dnsprobe.probe(ip, f"kubernetes.default.svc.{settings.cluster_domain}", timeout=0.25)


def _version(host: Kube) -> str:
    """The host's Kubernetes version, shown as the fake nodes' kubelet version."""
    for _ in range(50):
        try:
            return str(host.get("/version")["gitVersion"])
        except (ApiError, OSError, KeyError, TypeError):
            time.sleep(0.2)
    return "fake"


if __name__ == "__main__":
    sys.exit(main())
