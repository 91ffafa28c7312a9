"""Benchmark: the in-cluster vcluster pod's idle working set against its start-up time, for
chart settings (``VARIANTS``: where CoreDNS runs; earlier, the Go collector's GOGC and
GOMEMLIMIT), alternating on one kind host in the same run. Each vcluster:
created (ready time), left idle ``--idle`` s, the working set of its pod's containers summed
(``crictl stats`` in the node: what the kubelet counts), deleted.

    nice -n 10 python bench/incluster_memory.py [--rounds 3] [--idle 20]

Goal (issue 15 §3): the idle pod's working set ≤ upstream vcluster's 356 MiB (measured on
this machine earlier), without giving back start-up time. Writes
bench/results/incluster_memory.json.
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

from incluster import loadavg, pod_memory
from kindsetup import KindSetup, log

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version

RESULTS = Path(__file__).parent / "results"
HOST = "pytest-vcluster-bench-mem"
#: Chart values per variant. The earlier Go-collector comparison (GOMEMLIMIT 400/200/120 MiB,
#: GOGC=100) chose today's default; this run compares where CoreDNS runs.
VARIANTS: dict[str, dict[str, Any]] = {
    "chart default (GOGC=400 GOMEMLIMIT=200MiB, CoreDNS in the vcluster's pod)": {},
    "CoreDNS as a synced pod (coredns.embedded=false)": {"coredns": {"embedded": False}},
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=20.0)
    args = ap.parse_args()
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    k8s = parse_k8s_version(None)
    setup = KindSetup.prepare(k8s, default_cache_dir())
    host = setup.host(HOST)
    if host.exists():
        host.delete()
    host.start()
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    try:
        for r in range(args.rounds):
            for i, (variant, values) in enumerate(VARIANTS.items()):
                vc = VCluster(host.info(), f"mem-{r}-{i}", images=setup.images, values=values,
                              timeout=240)  # fmt: skip
                vc.create()
                try:
                    ready = round(vc.ready_seconds, 2)
                    time.sleep(args.idle)
                    per = pod_memory(host, vc.host_namespace)
                    # the vcluster's own pod (StatefulSet pod 0), not the pods it synced
                    mine = {k: v for k, v in per.items() if k.startswith(f"{vc.name}-0/")}
                    total = sum(v["working_set_mib"] for v in mine.values())
                    # What it synced at start (a CoreDNS pod when not in the vcluster's pod).
                    synced = sum(v["working_set_mib"] for k, v in per.items() if k not in mine)
                finally:
                    vc.delete()
                s = {"ready_s": ready, "working_set_mib": total, "containers": mine,
                     "synced_pods_working_set_mib": synced, "load": loadavg()}  # fmt: skip
                samples[variant].append(s)
                log(f"round {r + 1} {variant}: ready {ready}s, working set {total} MiB")
    finally:
        host.delete()
    result = {
        "benchmark": "incluster_memory",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "images": setup.images,
        "idle_s": args.idle,
        "upstream_vcluster_working_set_mib": 356,
        "variants": {
            v: {
                "ready_p50_s": statistics.median(x["ready_s"] for x in xs),
                "working_set_p50_mib": statistics.median(x["working_set_mib"] for x in xs),
                "with_synced_pods_p50_mib": statistics.median(
                    x["working_set_mib"] + x["synced_pods_working_set_mib"] for x in xs
                ),
                "samples": xs,
            }
            for v, xs in samples.items()
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "incluster_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    for v, d in result["variants"].items():
        print(f"{v}: ready p50 {d['ready_p50_s']} s, working set {d['working_set_p50_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
