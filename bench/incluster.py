"""Benchmark: in-cluster vclusters (Helm releases of chart/) on the offline kind host, side by
side with its baseline, a second ``kind create cluster`` from the same node image.

    nice -n 19 python bench/incluster.py [--runs 7] [--kind-runs 2] [--density 8]

Measures, in one run:
- the first vcluster on a fresh kind host (whether it paid ``kind load docker-image``);
- ``--runs`` vclusters one after another: create → ready (every stage); teardown as the plugin
  does it (release, pods and claims gone, namespace terminating), and until the namespace is
  gone; p50/p95;
- the vcluster pod's memory per container (working set and RSS from ``crictl stats`` in the
  node) once idle;
- density: ``--density`` idle vclusters at once, all answering ``/readyz`` at the end, the node
  container's memory, how long each took to become ready while the others were running;
- baseline: ``--kind-runs`` times ``kind create cluster`` of a second cluster until its node is
  Ready and CoreDNS runs (``KindHost.start``), and ``kind delete``.

Writes bench/results/incluster.json. Creates kind clusters ``pytest-vcluster-bench`` (the host)
and ``pytest-vcluster-bench-2`` (the baseline) and deletes both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from kindsetup import KindSetup, log

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.hosts.incluster import InClusterVCluster
from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
HOST = "pytest-vcluster-bench"
SECOND = "pytest-vcluster-bench-2"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 2)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": pct(values, 0.5),
        "p95": pct(values, 0.95),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def loadavg() -> float:
    return round(os.getloadavg()[0], 1)


def pod_memory(host: KindHost, namespace: str) -> dict[str, dict[str, int]]:
    """Per container of the namespace's pods: working set and RSS in MiB (crictl in the node)."""
    out = host.docker.out(
        [
            "exec", host.control_plane_container, "crictl", "stats", "-o", "json",
            "--label", f"io.kubernetes.pod.namespace={namespace}",
        ]
    )  # fmt: skip
    result: dict[str, dict[str, int]] = {}
    for st in json.loads(out).get("stats") or []:
        labels = st["attributes"]["labels"]
        key = f"{labels['io.kubernetes.pod.name']}/{labels['io.kubernetes.container.name']}"
        mem = st.get("memory") or {}
        result[key] = {
            "working_set_mib": round(int(mem.get("workingSetBytes", {}).get("value", 0)) / 2**20),
            "rss_mib": round(int(mem.get("rssBytes", {}).get("value", 0)) / 2**20),
        }
    return result


def one_vcluster(host: KindHost, name: str, images: dict[str, str]) -> dict[str, Any]:
    vc = VCluster(host.info(), name, images=images, timeout=240)
    vc.create()
    impl = vc._impl
    assert isinstance(impl, InClusterVCluster)
    sample: dict[str, Any] = {
        "ready_s": round(vc.ready_seconds, 2),
        "stages": dict(impl.timings),
        "load": loadavg(),
    }
    # As the plugin does: delete returns once the release, the pods and the claims are gone and
    # the namespace is terminating; the namespace controller removes it after a fixed 5 s.
    vc.delete(wait=False)
    sample["teardown_s"] = round(impl.teardown_seconds, 2)
    if not vc.wait_deleted():
        raise SystemExit(f"host namespace of {name} not gone")
    sample["namespace_gone_s"] = round(impl.deleted_seconds, 2)
    return sample


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--kind-runs", type=int, default=2)
    ap.add_argument("--density", type=int, default=8)
    ap.add_argument("--k8s-version", default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "incluster.json")
    args = ap.parse_args()
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    k8s = parse_k8s_version(args.k8s_version)
    cache = default_cache_dir()
    setup = KindSetup.prepare(k8s, cache)
    images, node_image, kind_host = setup.images, setup.node_image, setup.host

    result: dict[str, Any] = {
        "benchmark": "incluster",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "kubernetes": str(k8s),
        "images": images,
        "node_image": node_image,
        "load_at_start": loadavg(),
    }
    host = kind_host(HOST)
    if host.exists():
        host.delete()
    t0 = time.monotonic()
    host.start()
    result["host_ready_s"] = round(time.monotonic() - t0, 1)
    log(f"host ready in {result['host_ready_s']}s")
    try:
        first = one_vcluster(host, "bench-first", images)
        result["first_vcluster"] = first
        log(f"first vcluster: {json.dumps(first)}")

        samples = []
        for i in range(args.runs):
            s = one_vcluster(host, f"bench-{i}", images)
            log(f"run {i + 1}: ready {s['ready_s']}s teardown {s['teardown_s']}s {s['stages']}")
            samples.append(s)
        stage_names = list(samples[0]["stages"])
        result["sequential"] = {
            "runs": len(samples),
            "ready_s": summary([s["ready_s"] for s in samples]),
            "teardown_s": summary([s["teardown_s"] for s in samples]),
            "namespace_gone_s": summary([s["namespace_gone_s"] for s in samples]),
            "stage_p50_s": {
                k: pct([s["stages"].get(k, 0.0) for s in samples], 0.5) for k in stage_names
            },
            "samples": samples,
        }

        # memory of one idle vcluster, then density
        vcs: list[VCluster] = []
        density: dict[str, Any] = {"target": args.density, "ready_s": []}
        node_before = host.memory()
        try:
            for i in range(args.density):
                vc = VCluster(host.info(), f"dense-{i}", images=images, timeout=240)
                try:
                    vc.create()
                except Exception as exc:  # report how many fit
                    density["stopped_by"] = f"{type(exc).__name__}: {str(exc)[:500]}"
                    vc.delete()
                    break
                vcs.append(vc)
                density["ready_s"].append(round(vc.ready_seconds, 2))
                log(f"density: {len(vcs)} running (last ready in {vc.ready_seconds:.2f}s)")
            time.sleep(15)  # idle
            answering = 0
            for vc in vcs:
                status, _ = vc._impl.rest().get("/readyz")  # type: ignore[union-attr]
                answering += status == 200
            per_pod = pod_memory(host, vcs[0].host_namespace) if vcs else {}
            node_after = host.memory()
            density.update(
                {
                    "running": len(vcs),
                    "answering_readyz": answering,
                    "node_memory_mib_before": {k: round(v / 2**20) for k, v in node_before.items()},
                    "node_memory_mib_after": {k: round(v / 2**20) for k, v in node_after.items()},
                    "load_at_end": loadavg(),
                }
            )
            result["idle_vcluster_memory_mib"] = per_pod
            log(f"idle vcluster memory: {json.dumps(per_pod)}")
        finally:
            t1 = time.monotonic()
            for vc in vcs:  # as the plugin: each teardown, then every namespace at the end
                vc.delete(wait=False)
            density["teardown_all_s"] = round(time.monotonic() - t1, 1)
            for vc in vcs:
                vc.wait_deleted()
            density["namespaces_gone_s"] = round(time.monotonic() - t1, 1)
        result["density"] = density
        log(f"density: {json.dumps(density)}")

        # baseline: a second kind cluster, same node image, while the host runs
        base = []
        for i in range(args.kind_runs):
            second = kind_host(SECOND)
            if second.exists():
                second.delete()
            t2 = time.monotonic()
            second.start()
            ready = time.monotonic() - t2
            second.stop()  # created by this run: deleted by its last user
            sample = {
                "create_returns_s": round(second.timings.get("create", 0.0), 1),
                "ready_s": round(ready, 1),
                "delete_s": round(second.timings.get("delete", 0.0), 1),
                "load": loadavg(),
            }
            log(f"kind create cluster {i + 1}: {json.dumps(sample)}")
            base.append(sample)
        result["baseline_kind_create"] = {
            "runs": len(base),
            "ready_s": summary([b["ready_s"] for b in base]),
            "delete_s": summary([b["delete_s"] for b in base]),
            "samples": base,
        }
    finally:
        host.stop()
        if host.exists():
            host.delete()
    seq = result["sequential"]
    kind_p50 = result["baseline_kind_create"]["ready_s"]["p50"]
    result["speedup_vs_kind_create"] = round(kind_p50 / seq["ready_s"]["p50"], 1)
    result["teardown_speedup_vs_kind_delete"] = round(
        result["baseline_kind_create"]["delete_s"]["p50"] / seq["teardown_s"]["p50"], 1
    )
    result["load_at_end"] = loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("sequential", "baseline_kind_create", "speedup_vs_kind_create")
            },
            indent=2,
        )[:3000]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
