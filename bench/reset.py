"""Benchmark: returning a shared vcluster to its snapshot (``VCluster.reset()``) after a test
made 50 objects of 10 kinds, side by side with making a new vcluster, on the local host and on
kind, in the same run.

    python bench/reset.py [--hosts local,kind] [--runs 15] [--new-runs 5]

Each run: the "test" creates 50 objects of 10 kinds (3 namespaces, each with 5 ConfigMaps,
4 Secrets, a ServiceAccount, a Service, a Role, a RoleBinding and a pod whose host copy exists
before the reset is timed; 2 ClusterRoles, 3 PriorityClasses), then ``reset()`` is timed from
the client (request to answer, host copies gone). Then a new vcluster is created and deleted
``--new-runs`` times: the alternative a suite without reset has. Writes bench/results/reset.json.
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
from kubernetes import client

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver, default_cache_dir
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version

RESULTS = Path(__file__).parent / "results"
KINDS = 10


def objects(run: int, image: str) -> list[dict[str, Any]]:
    """50 objects of 10 kinds (see the module doc)."""
    docs: list[dict[str, Any]] = []
    for i in range(3):
        ns = f"bench-{run}-{i}"
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        meta = {"namespace": ns}
        docs += [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{j}", **meta}}
            for j in range(5)
        ]
        docs += [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s{j}", **meta}}
            for j in range(4)
        ]
        docs += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot", **meta}},
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", **meta},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "r", **meta},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "r", **meta},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}],
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "labels": {"app": "web"}, **meta},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "c",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", "exec sleep 3600"],
                            "volumeMounts": [{"name": "c", "mountPath": "/c"}],
                        }
                    ],
                    "volumes": [{"name": "c", "configMap": {"name": "c0"}}],
                },
            },
        ]
    docs += [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"bench-{run}-{j}"},
            "rules": [],
        }
        for j in range(2)
    ]
    docs += [
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": f"bench-{run}-{j}"},
            "value": 10 + j,
        }
        for j in range(3)
    ]
    return docs


def host_pods(vc: VCluster) -> int:
    core = client.CoreV1Api(vc.host_api_client())
    sel = f"vc.pytest-vcluster.io/managed-by={vc.name}"
    return len(core.list_namespaced_pod(vc.host_namespace, label_selector=sel).items)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(host_info: Any, runs: int, new_runs: int, image: str, **vc_kw: Any) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    with VCluster(host_info, "bench-reset", timeout=240, **vc_kw) as vc:
        snap = vc.snapshot()
        log(f"snapshot: {snap}")
        baseline_pods = host_pods(vc)
        for run in range(runs):
            docs = objects(run, image)
            vc.apply(docs)
            deadline = time.monotonic() + 120
            while host_pods(vc) < baseline_pods + 3:  # the reset also has host copies to remove
                if time.monotonic() > deadline:
                    raise RuntimeError("host copies of the pods did not appear")
                time.sleep(0.1)
            t0 = time.monotonic()
            result = vc.reset()
            took = time.monotonic() - t0
            left = host_pods(vc) - baseline_pods
            samples.append({"reset_s": round(took, 4), "left_host_pods": left, **result})
            result.pop("keys", None)
            log(f"run {run}: reset {took:.3f}s {result}")
    new: list[float] = []
    for i in range(new_runs):
        t0 = time.monotonic()
        with VCluster(host_info, f"bench-new-{i}", timeout=240, **vc_kw):
            new.append(time.monotonic() - t0)
        log(f"new vcluster {i}: ready in {new[-1]:.2f}s")
    resets = [s["reset_s"] for s in samples]
    return {
        "objects_per_test": len(objects(0, image)),
        "kinds_per_test": KINDS,
        "runs": runs,
        "reset_p50_s": round(statistics.median(resets), 4),
        "reset_p95_s": round(pct(resets, 0.95), 4),
        "new_vcluster_p50_s": round(statistics.median(new), 3),
        "new_vcluster_samples_s": [round(x, 3) for x in new],
        "host_pods_left_after_reset": max(s["left_host_pods"] for s in samples),
        "samples": [{k: v for k, v in s.items() if k != "keys"} for s in samples],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hosts", default="local,kind")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--new-runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "reset.json")
    args = ap.parse_args()
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    k8s = parse_k8s_version(None)
    cache = default_cache_dir()
    result: dict[str, Any] = {
        "benchmark": "reset",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "k8s_version": str(k8s),
        "goals": {"local_reset_p50_s": 0.5, "kind_reset_p50_s": 1.0},
    }
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    if "local" in hosts:
        resolver = BinaryResolver(k8s, cache, download_base="off")
        bins = {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
        with LocalHost(k8s, bins) as host:
            result["local"] = measure(host.info(), args.runs, args.new_runs, "busybox:1")
        result["local"]["goal_met"] = result["local"]["reset_p50_s"] <= 0.5
    if "kind" in hosts:
        kind = KindSetup.prepare(k8s, cache)
        image = kind.busybox_image
        host = kind.host("pytest-vcluster-bench-reset")
        host.start()
        try:
            result["kind"] = measure(
                host.info(),
                max(3, args.runs // 2),
                max(2, args.new_runs // 2),
                image,
                images=kind.images,
            )
        finally:
            host.delete()
        result["kind"]["goal_met"] = result["kind"]["reset_p50_s"] <= 1.0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
