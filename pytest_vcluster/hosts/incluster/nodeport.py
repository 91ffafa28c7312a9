"""The vcluster's API server reached straight at a NodePort of a host node (kind on Linux).

Through the port-forward every new connection is a WebSocket tunnel via the host API server,
its kubelet and the container runtime, and every byte of a TLS handshake makes that trip:
measured on kind, an exec through the vcluster cost 14 ms more that way than at a NodePort of
the node's Docker address (``bench/kubelet_proxy.py``). Where this machine can route to the
node (a Docker network on Linux; not Docker Desktop's VM, not a remote daemon), the release's
Service is a NodePort and the kubeconfig names ``https://<node address>:<node port>``; nothing
runs in this process, so a kept vcluster stays reachable after the run without a helper.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

from ...procs import ProcessGroup


def reachable(address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to ``address:port`` gets an answer. A refusal is an answer
    (the node's kernel or kube-proxy, before the API server listens); a timeout or no route is
    not."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return True
    except OSError as exc:
        return exc.errno == errno.ECONNREFUSED


class NodePorts:
    """The same face as ``Forwards`` (``server``, ``start``, ``stop``, ``detach``...)."""

    def __init__(self, address: str, api_port: int) -> None:
        self.address = address
        self.api_port = api_port
        self.health_port = 0  # the syncer's health port is read through the host API server
        self._open = False

    @property
    def server(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.api_port}"

    def start(self, deadline: float) -> None:
        """Nothing to open: the readiness checks that follow go through ``server``."""
        self._open = True

    @property
    def stats(self) -> dict[str, Any]:
        return {}

    @property
    def active(self) -> bool:
        return self._open

    def stop(self) -> None:
        self._open = False

    def detach(self, kubectl: Path, procs: ProcessGroup, log: Path) -> None:
        """The node port outlives this process: nothing to hand over."""
