"""Benchmark: every supported Kubernetes version, as a version matrix: ready p50 of a vcluster
of each version on one host (of the newest), and the example suite run once across all of them
(``--vcluster-k8s-version=1.34,1.35,1.36,1.37``), on the local host and on kind.

    python bench/matrix.py [--versions 1.34,1.35,1.36,1.37] [--hosts local,kind] [--runs 3]

The binaries of each version come from the cache, else are built from Go modules (offline) —
the seconds are recorded; on kind each version's control-plane image is built by recipe hash.
Writes bench/results/matrix.json: per host and version the ready samples and p50, the example
cells passed/failed/skipped (from the suite's JUnit XML), and the suite's seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from kindsetup import ROOT, KindSetup, log

from pytest_vcluster import images as recipes
from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver, default_cache_dir
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import K8sVersion, parse_k8s_version

RESULTS = Path(__file__).parent / "results"
VCLUSTER_TOOLS = ("kube-apiserver", "kube-controller-manager")


def obtain(versions: list[K8sVersion], cache: Path) -> dict[str, Any]:
    """Each version's vcluster binaries: cached, or built now (timed)."""
    out: dict[str, Any] = {}
    for v in versions:
        resolver = BinaryResolver(v, cache, download_base="off")
        t0 = time.monotonic()
        sources = {t: resolver.resolve(t).source for t in VCLUSTER_TOOLS}
        out[str(v)] = {"sources": sources, "seconds": round(time.monotonic() - t0, 1)}
        log(f"binaries {v}: {sources} in {out[str(v)]['seconds']}s")
    return out


def ready_samples(host_info: Any, v: K8sVersion, runs: int, **kw: Any) -> list[float]:
    samples = []
    for i in range(runs):
        t0 = time.monotonic()
        with VCluster(host_info, f"m{v.minor}-{i}", k8s_version=v.minor_str, timeout=300, **kw):
            samples.append(round(time.monotonic() - t0, 3))
        log(f"vcluster {v} ready in {samples[-1]}s")
    return samples


def examples(versions: list[K8sVersion], extra: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The example suite once across the matrix; per cell id suffix, the outcomes."""
    junit = Path(f"/tmp/pytest-vcluster-matrix-{os.getpid()}.xml")
    matrix = ",".join(v.minor_str for v in versions)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "examples",
        "-p",
        "no:randomly",
        f"--vcluster-k8s-version={matrix}",
        f"--junitxml={junit}",
        *extra,
    ]
    log("examples: " + " ".join(argv[3:]))
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = round(time.monotonic() - t0, 1)
    cells: dict[str, dict[str, int]] = {v.minor_str: {} for v in versions}
    cells["outside the matrix"] = {}
    failed: list[str] = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        cell = next((v.minor_str for v in versions if f"[k8s-{v.minor_str}" in name), None)
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed", "error": "failed", "skipped": "skipped"}[tag]
        if outcome == "failed":
            failed.append(f"{case.get('classname')}::{name}")
        bucket = cells[cell or "outside the matrix"]
        bucket[outcome] = bucket.get(outcome, 0) + 1
    junit.unlink()
    log(f"examples: exit {proc.returncode} in {seconds}s: {cells}")
    if proc.returncode not in (0, 1):
        log(proc.stdout[-3000:] + proc.stderr[-2000:])
    return {"exit_code": proc.returncode, "seconds": seconds, "cells": cells, "failed": failed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--versions", default="1.34,1.35,1.36,1.37")
    ap.add_argument("--hosts", default="local,kind")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "matrix.json")
    args = ap.parse_args()
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    versions = [parse_k8s_version(v) for v in args.versions.split(",")]
    newest = max(versions)
    cache = default_cache_dir()
    result: dict[str, Any] = {
        "benchmark": "matrix",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "host_version": str(newest),
        "versions": [str(v) for v in versions],
        "binaries": obtain(versions, cache),
    }
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    env = dict(os.environ)
    if "local" in hosts:
        resolver = BinaryResolver(newest, cache, download_base="off")
        bins = {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
        local: dict[str, Any] = {}
        with LocalHost(newest, bins) as host:
            for v in versions:
                samples = ready_samples(host.info(), v, args.runs)
                local[str(v)] = {"ready_s": samples, "ready_p50_s": statistics.median(samples)}
        local["examples"] = examples(versions, ["--vcluster-prewarm=0"], env)
        result["local"] = local
    if "kind" in hosts:
        kind = KindSetup.prepare(newest, cache)
        env["PYTEST_VCLUSTER_EXAMPLE_IMAGE"] = kind.busybox_image
        name = "pytest-vcluster-bench-matrix"
        host = kind.host(name)
        host.start()
        on_kind: dict[str, Any] = {}
        try:
            for v in versions:
                t0 = time.monotonic()
                images = recipes.build(str(v), cache, log, docker=kind.docker)
                built = round(time.monotonic() - t0, 1)
                samples = ready_samples(host.info(), v, args.runs, images=images)
                on_kind[str(v)] = {
                    "images_s": built,
                    "ready_s": samples,
                    "ready_p50_s": statistics.median(samples),
                }
            on_kind["examples"] = examples(
                versions,
                ["--vcluster-host=kind", f"--vcluster-kind-cluster={name}"],
                env,
            )
        finally:
            host.delete()
        result["kind"] = on_kind
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
