"""Where an in-kind vcluster's start goes, pod by pod: a watch of the host's pods beside
``VCluster.create``, with the plugin's stage timings on the same clock.

For each start it prints the stages and, per host pod of the vcluster (its own pod, CoreDNS),
when it was first seen, scheduled, running and Ready, in seconds from the start. Session 11
read from it that CoreDNS is the critical path (its host pod appears only once the virtual API
answers). Not a benchmark of its own: no results file, nothing to compare.

    python bench/incluster_timeline.py [--starts 3]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

from kindsetup import KindSetup, log
from kubernetes import client, config, watch

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version

CLUSTER = "pytest-vcluster-timeline"
STEPS = ("seen", "scheduled", "running", "ready")


def pod_steps(pod: Any) -> dict[str, bool]:
    conditions = {c.type: c.status for c in pod.status.conditions or []}
    statuses = pod.status.container_statuses or []
    return {
        "seen": True,
        "scheduled": conditions.get("PodScheduled") == "True",
        "running": any(s.state and s.state.running for s in statuses),
        "ready": conditions.get("Ready") == "True",
    }


class HostPods(threading.Thread):
    """First time each host pod of the tracked vcluster reached each step (monotonic clock)."""

    def __init__(self, core: client.CoreV1Api) -> None:
        super().__init__(daemon=True)
        self.core = core
        self.first: dict[tuple[str, str], float] = {}
        self.namespace = ""
        self._lock = threading.Lock()

    def track(self, namespace: str) -> None:
        with self._lock:
            self.namespace = namespace
            self.first.clear()

    def run(self) -> None:
        for event in watch.Watch().stream(self.core.list_pod_for_all_namespaces):
            pod = event["object"]
            name, now = pod.metadata.name.split("-x-")[0], time.monotonic()
            with self._lock:
                if pod.metadata.namespace != self.namespace or event["type"] == "DELETED":
                    continue
                for step, reached in pod_steps(pod).items():
                    if reached:
                        self.first.setdefault((name, step), now)

    def since(self, t0: float) -> dict[str, float]:
        with self._lock:
            items = sorted(self.first.items(), key=lambda kv: kv[1])
        return {f"{name}:{step}": round(t - t0, 2) for (name, step), t in items}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    setup = KindSetup.prepare(parse_k8s_version(None), default_cache_dir())
    host = setup.host(CLUSTER)
    if not host.exists():
        host.start()
    try:
        core = client.CoreV1Api(config.new_client_from_config(str(host.kubeconfig_path)))
        pods = HostPods(core)
        pods.start()
        time.sleep(1)
        for i in range(args.starts):
            vc = VCluster(host.info(), f"timeline-{i}", images=setup.images, timeout=240)
            pods.track(f"vcluster-timeline-{i}")
            vc.create()
            t0 = vc._impl.stages.t0  # type: ignore[attr-defined]
            log(f"start {i + 1}: stages {json.dumps(vc._impl.timings)}")  # type: ignore[attr-defined]
            log(f"start {i + 1}: host pods {json.dumps(pods.since(t0))}")
            pods.track("")
            vc.delete(wait=True)
    finally:
        host.delete()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
