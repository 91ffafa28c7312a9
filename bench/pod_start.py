"""Benchmark: pod start through a vcluster on kind — tokens written after the binding (the
default: they name the node) vs ``--early-tokens`` (written with the host pod) — side by side
with the same pod created directly on the host, in the same run, alternating.

    nice -n 19 python bench/pod_start.py [--pods 20]

Each round creates one pod (busybox ``sleep``, default ServiceAccount token mounted, readiness
by exec-less ``Ready``) on each side, one after another, and measures create sent → the pod's
Ready condition seen by a watch of the API it was created in; then deletes it. Medians and p90
per side. Writes bench/results/pod_start.json. Uses the kind cluster ``pytest-vcluster-bench``
(created, and deleted at the end unless it existed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kindsetup import KindSetup, log
from kubernetes import client, watch
from kubernetes.config import new_client_from_config

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version

RESULTS = Path(__file__).resolve().parent / "results"
FLOOR_NS = "bench-pod-start"


def pod(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                }
            ],
        },
    }


def _ready(obj: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in obj.status.conditions or [])


def start_seconds(core: client.CoreV1Api, namespace: str, body: dict[str, Any]) -> float:
    """Create sent → Ready seen by a watch (started first, so no event is missed)."""
    name = body["metadata"]["name"]
    w = watch.Watch()
    events = w.stream(
        core.list_namespaced_pod,
        namespace,
        field_selector=f"metadata.name={name}",
        timeout_seconds=120,
    )
    t0 = time.perf_counter()
    core.create_namespaced_pod(namespace, body)
    try:
        for event in events:
            if _ready(event["object"]):
                return time.perf_counter() - t0
        raise RuntimeError(f"pod {namespace}/{name} not Ready within 120 s")
    finally:
        w.stop()
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_s": round(statistics.median(ordered), 3),
        "p90_s": round(ordered[max(0, int(len(ordered) * 0.9) - 1)], 3),
        "min_s": round(ordered[0], 3),
        "n": len(ordered),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20, help="rounds (one pod per side each)")
    ap.add_argument("--cluster", default="pytest-vcluster-bench")
    args = ap.parse_args()
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    k8s, cache = parse_k8s_version(None), default_cache_dir()
    kind = KindSetup.prepare(k8s, cache)
    host = kind.host(args.cluster)
    existed = host.exists()
    host.start()
    image = kind.busybox_image
    early_values = {"syncer": {"extraArgs": ["--early-tokens"]}}
    vcs = {
        "vcluster (tokens after binding)": VCluster(host.info(), "ps-bound", images=kind.images),
        "vcluster --early-tokens": VCluster(
            host.info(), "ps-early", images=kind.images, values=early_values
        ),
    }
    result: dict[str, Any] = {
        "benchmark": "pod_start",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "kubernetes": str(k8s),
        "load_at_start": round(os.getloadavg()[0], 1),
        "rounds": args.pods,
    }
    host_core = client.CoreV1Api(new_client_from_config(str(host.kubeconfig_path)))
    try:
        for vc in vcs.values():
            vc.create()
        host_core.create_namespace({"metadata": {"name": FLOOR_NS}})
        deadline = time.monotonic() + 60  # the namespace's default ServiceAccount
        while not host_core.list_namespaced_service_account(FLOOR_NS).items:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no default ServiceAccount in {FLOOR_NS}")
            time.sleep(0.2)
        sides: dict[str, tuple[client.CoreV1Api, str]] = {
            "host (floor)": (host_core, FLOOR_NS),
            **{label: (client.CoreV1Api(vc.api_client), "default") for label, vc in vcs.items()},
        }
        times: dict[str, list[float]] = {label: [] for label in sides}
        for i in range(args.pods + 1):
            for label, (core, ns) in sides.items():
                seconds = start_seconds(core, ns, pod(f"p{i}", image))
                if i:  # the first round warms caches (image, token Secret informers)
                    times[label].append(seconds)
            log(f"round {i}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v))
        result["start"] = {label: summary(v) for label, v in times.items()}
        floor = result["start"]["host (floor)"]["p50_s"]
        result["overhead_p50_s"] = {
            label: round(s["p50_s"] - floor, 3)
            for label, s in result["start"].items()
            if label != "host (floor)"
        }
    finally:
        for vc in vcs.values():
            vc.delete()
        try:
            host_core.delete_namespace(FLOOR_NS)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        if not existed:
            host.delete()
    out = RESULTS / "pod_start.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}: {json.dumps(result['start'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
