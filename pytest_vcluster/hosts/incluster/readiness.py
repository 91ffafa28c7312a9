"""An in-cluster vcluster's staged readiness; each stage is one ``poll`` and fails fast.

pod scheduled → containers running (from the pod watch; ErrImagePull, CrashLoopBackOff,
Unschedulable end the wait at once with the reason and the crashed container's log) → [the
port-forward] → kube-apiserver ``/readyz`` and the syncer's ``/readyz``, polled every 0.1 s
through the host's pod proxy (no waiting for the kubelet's probes), then through the
port-forward → the ``default`` ServiceAccount → the vcluster's DNS Service has its host
Service's ClusterIP → CoreDNS has a ready endpoint on the host → a lookup through that Service
from the pod network answers (the syncer's ``/readyz/dns``: kube-proxy programs the node after
the endpoint is ready).
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Callable
from typing import Any

from ...errors import InClusterError, ReadinessTimeoutError
from ...rest import RestClient
from ..base import Progress
from ..controlplane import readyz_path
from ..pods import pod_problem, pod_summary
from .forward import API_PORT, HEALTH_PORT
from .hostapi import HostApi
from .podwatch import PodWatch


def ready_but_for(status: int, body: str, exclude: tuple[str, ...]) -> bool:
    """Whether a /readyz answer says ready but for the ``exclude``d checks: a failed /readyz
    lists every check, ``[-]NAME failed: ...`` for those not ready."""
    if status == 200:
        return True
    failing = set(re.findall(r"^\[-\](\S+) failed", body, re.MULTILINE))
    return status == 500 and bool(failing) and failing <= set(exclude)


def _retry() -> tuple[type[BaseException], ...]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    return (OSError, http.client.HTTPException, HTTPError, ApiException)


class Stages:
    """When each stage passed, seconds from the start (``timings``), each also a progress line."""

    def __init__(self, name: str, progress: Progress) -> None:
        self.name, self.progress = name, progress
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}

    def passed(self, stage: str) -> None:
        self.timings[stage] = round(time.monotonic() - self.t0, 2)
        self.progress(
            f"pytest-vcluster: vcluster {self.name}: {stage} ({self.timings[stage]:.2f}s)"
        )


class Readiness:
    def __init__(
        self,
        name: str,
        namespace: str,
        pod: str,
        api: HostApi,
        watch: PodWatch,
        stages: Stages,
        deadline: float,
    ) -> None:
        self.name, self.namespace, self.pod = name, namespace, pod
        self.api, self.watch, self.stages, self.deadline = api, watch, stages, deadline

    def _poll(self, what: str, check: Callable[[], Any], interval: float = 0.1) -> Any:
        from ...wait import poll

        def step() -> Any:
            self.check_pod()
            return check()

        return poll(
            f"vcluster {self.name!r}: {what}",
            step,
            self.deadline,
            interval=interval,
            retry=_retry(),
            timeout_error=ReadinessTimeoutError,
        )

    def check_pod(self) -> dict[str, Any] | None:
        """The pod as last seen; raises at once on a reason that never fixes itself."""
        pod = self.watch.latest()
        problem = pod_problem(pod) if pod is not None else None
        if pod is not None and problem:
            raise InClusterError(
                f"vcluster {self.name!r} cannot start: {problem}" + self._log_excerpt(pod)
            )
        return pod

    def _log_excerpt(self, pod: dict[str, Any]) -> str:
        out = []
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("restartCount") or "terminated" in (cs.get("lastState") or {}):
                try:
                    text = self.api.log(
                        self.namespace, self.pod, cs["name"], tail=15, previous=True
                    )
                except _retry() as exc:  # the reason above stands on its own
                    text = f"(no log: {type(exc).__name__})"
                if text.strip():
                    out.append(f"\n--- {cs['name']} (previous run) ---\n{text.rstrip()}")
        return "".join(out)

    # -- the stages -------------------------------------------------------------------------
    def running(self) -> None:
        from ...wait import NotYet

        def condition(name: str, phase: str | None = None) -> Callable[[], None]:
            def check() -> None:
                pod = self.watch.latest()
                if pod is None:
                    raise NotYet("no pod yet")
                status = pod.get("status") or {}
                conds = {c["type"]: c.get("status") for c in status.get("conditions") or []}
                if (phase and status.get("phase") == phase) or (
                    not phase and conds.get(name) == "True"
                ):
                    return
                raise NotYet(pod_summary(pod))

            return check

        self._poll(f"pod {self.pod} scheduled", condition("PodScheduled"), interval=0.05)
        self.stages.passed("pod scheduled")
        self._poll(f"pod {self.pod} running", condition("", "Running"), interval=0.05)
        self.stages.passed("containers running")

    def endpoints(self, rest: RestClient, exclude: tuple[str, ...] = ()) -> None:
        """kube-apiserver's ``/readyz`` but for the ``exclude``d checks (the chart's probes
        leave out the same: chart.readyz_exclude), then the syncer's, through the host's pod
        proxy (a refused port is a 503 there); then the API server through the port-forward."""
        from ...wait import NotYet

        ready = {"API server": False, "syncer": False}
        targets = {
            "API server": f"https:{self.pod}:{API_PORT}",
            "syncer": f"http:{self.pod}:{HEALTH_PORT}",
        }
        direct = readyz_path(exclude)

        def check() -> None:
            for part, target in targets.items():
                if not ready[part]:
                    # The pod proxy passes no query of ours: the checks are read from the
                    # body of a failed /readyz, which lists them.
                    status, body = self.api.proxy_get(self.namespace, target, "readyz")
                    if not ready_but_for(status, body, exclude):
                        raise NotYet(
                            f"{part} /readyz: {status} {body[-300:]}; {self._state(ready)}"
                        )
                    ready[part] = True
                    self.stages.passed(f"{part} ready")
            status, body = rest.get(direct)
            if status != 200:
                raise NotYet(f"through the port-forward: {status} {body}")

        self._poll("API server and syncer ready", check)

    def _state(self, ready: dict[str, bool]) -> str:
        pod = self.watch.latest()
        return ", ".join(f"{k} ready: {v}" for k, v in ready.items()) + (
            f"; pod: {pod_summary(pod)}" if pod else ""
        )

    def default_service_account(self, rest: RestClient) -> None:
        """Created here when missing: the controller-manager's ServiceAccount controller
        starts ~2 s after the API server is ready; it adopts ours."""
        from ...wait import NotYet

        path = "/api/v1/namespaces/default/serviceaccounts"

        def check() -> None:
            status, body = rest.get(path + "/default")
            if status == 404:
                status, body = rest.request("POST", path, {"metadata": {"name": "default"}})
                status = 200 if status in (201, 409) else status
            if status != 200:
                raise NotYet(f"{status} {body}")

        self._poll("the default ServiceAccount", check)
        self.stages.passed("default ServiceAccount")

    def dns(self, rest: RestClient, host_service: str) -> str:
        """The vcluster's kube-dns Service (the syncer makes it) has the ClusterIP of
        ``host_service`` (the chart's, with CoreDNS in the vcluster's pod; else its host copy),
        then that has a ready CoreDNS endpoint (read on the host: no wait for the status copy
        and the vcluster's endpoint controller), then a lookup through it answers. Its IP."""
        from ...wait import NotYet

        def synced() -> str:
            status, body = rest.get("/api/v1/namespaces/kube-system/services/kube-dns")
            if status != 200:
                raise NotYet(f"kube-dns in the vcluster: {status} {body}")
            virtual_ip = body["spec"].get("clusterIP")
            host_ip = self.api.service_ip(self.namespace, host_service)
            if not host_ip or host_ip != virtual_ip:
                raise NotYet(f"virtual kube-dns {virtual_ip}, host copy {host_ip or 'none yet'}")
            return host_ip

        ip: str = self._poll("its DNS Service (kube-system/kube-dns) synced", synced)
        self.stages.passed("DNS service")

        def answering() -> None:
            if not self.api.has_ready_endpoint(self.namespace, host_service):
                raise NotYet(f"host Service {host_service}: no ready endpoint yet")

        try:
            self._poll("CoreDNS ready", answering)
        except ReadinessTimeoutError as exc:
            pods = self.api.pods(self.namespace, "vc.pytest-vcluster.io/k8s-app=kube-dns")
            from ..pods import pods_table

            raise ReadinessTimeoutError(f"{exc}\nhost pods: {pods_table(pods)}") from None
        self.stages.passed("DNS ready")

        def resolves() -> None:
            # A ready endpoint is not yet a rule on the node: kube-proxy programs the
            # ClusterIP a moment later, and a pod started before that fails its first lookup.
            # The syncer asks the Service from the pod network (a syncer image without this
            # check answers 404: nothing to wait for).
            syncer = f"http:{self.pod}:{HEALTH_PORT}"
            status, body = self.api.proxy_get(self.namespace, syncer, "readyz/dns")
            if status not in (200, 404):
                raise NotYet(
                    f"a lookup through the DNS Service from the pod network: {body[-300:]}"
                )

        self._poll("DNS answering in the pod network", resolves)
        self.stages.passed("DNS answers")
        return ip
