"""The vcluster's API server and the syncer's health port on 127.0.0.1, for this process.

``pytest_vcluster.portforward`` opens one WebSocket tunnel per local connection (a broken
stream ends only itself). A kept vcluster outlives this process, so ``detach()`` hands its
ports to a detached ``kubectl port-forward`` for a person's commands after the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...errors import InClusterError, ReadinessTimeoutError
from ...portforward import HostEndpoint, PortForward, PortForwardError
from ...portforward import stats as port_forward_stats
from ...procs import ProcessGroup
from ...wait import NotYet, poll

API_PORT = 6443
HEALTH_PORT = 8081  # the syncer's /readyz
# The host API server answers "error dialing backend" when it cannot reach the node's kubelet.
# A kubelet restarting is back within seconds; a node without one (kwok, virtual-kubelet) never
# is, and waiting for the whole timeout would only hide the reason.
KUBELET_GRACE = 10.0


class Forwards:
    def __init__(self, host_kubeconfig: str, namespace: str, pod: str) -> None:
        self.host_kubeconfig, self.namespace, self.pod = host_kubeconfig, namespace, pod
        self._forwards: list[PortForward] = []
        self.api_port = 0
        self.health_port = 0

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def start(self, deadline: float) -> None:
        """Listen on both ports; return once a first tunnel went through (the host may refuse
        ``pods/portforward``: that is an error at once)."""
        endpoint = HostEndpoint.from_kubeconfig(self.host_kubeconfig)
        self._forwards = [
            PortForward(endpoint, self.namespace, self.pod, API_PORT),
            PortForward(endpoint, self.namespace, self.pod, HEALTH_PORT),
        ]
        self.api_port = self._forwards[0].start()
        self.health_port = self._forwards[1].start()

        unreachable_since: float | None = None  # first "error dialing backend" in a row

        def tunnel() -> None:
            nonlocal unreachable_since
            try:
                self._forwards[0].check(timeout=max(1.0, deadline - time.monotonic()))
            except PortForwardError as exc:
                if " 403" in str(exc):
                    raise InClusterError(str(exc)) from None
                if "error dialing backend" not in str(exc):
                    unreachable_since = None
                elif unreachable_since is None:
                    unreachable_since = time.monotonic()
                elif time.monotonic() - unreachable_since > KUBELET_GRACE:
                    raise InClusterError(
                        f"{exc}: the host API server has not reached the kubelet of the node "
                        f"running pod {self.namespace}/{self.pod} for {KUBELET_GRACE:.0f}s; a "
                        "vcluster on this host needs nodes with a real kubelet (kwok or "
                        "virtual-kubelet nodes serve no port-forward)"
                    ) from None
                raise NotYet(str(exc)) from None

        poll(
            f"a port-forward to pod {self.namespace}/{self.pod}",
            tunnel,
            deadline,
            retry=(OSError, TimeoutError),
            timeout_error=ReadinessTimeoutError,
        )

    @property
    def stats(self) -> dict[str, Any]:
        return port_forward_stats(self._forwards)

    @property
    def active(self) -> bool:
        return bool(self._forwards)

    def stop(self) -> None:
        for forward in self._forwards:
            forward.stop()
        self._forwards = []

    def detach(self, kubectl: Path, procs: ProcessGroup, log: Path) -> None:
        """``kubectl port-forward`` takes over the same ports (one tunnel is fine for a
        person's commands after the run)."""
        ports = (self.api_port, self.health_port)
        self.stop()
        argv = [
            str(kubectl), "--kubeconfig", self.host_kubeconfig,
            "port-forward", "-n", self.namespace, f"pod/{self.pod}",
            f"{ports[0]}:{API_PORT}", f"{ports[1]}:{HEALTH_PORT}", "--address", "127.0.0.1",
        ]  # fmt: skip
        procs.start("port-forward", argv, log)
