"""``python -m syncer``: run the syncer until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence

from . import bootstrap
from .app import build
from .core.metrics import serve
from .kube import Kube
from .settings import parse


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    virtual = Kube.from_kubeconfig(settings.virtual_kubeconfig, name="virtual")
    host = Kube.from_kubeconfig(
        settings.host_kubeconfig, context=settings.host_context, name="host"
    )
    engine = build(settings, virtual, host)
    server = serve(settings.health_address, engine.alive, engine.ready.is_set, engine.metrics)
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
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
