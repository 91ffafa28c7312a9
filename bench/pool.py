"""Benchmark: the warm pool on kind. A suite of tests, each taking a vcluster, doing a fixed
piece of work in it and then "thinking" a few seconds, run three ways on one kind host in the
same run, alternating:

- ``no pool``: ``--vcluster-prewarm=0`` (every test waits for its own vcluster);
- ``no pool, settled``: the same, the work only 5 s after the vcluster is ready (its
  controller-manager's controllers start after the readiness: this is the fair baseline);
- ``pool, idle``: ``--vcluster-prewarm=1`` (the default budget: the next vcluster starts with
  the least CPU request and no limit, so it runs on what the node leaves idle; the chart's
  requests back when a test takes it);
- ``pool, 250m``: ``--vcluster-prewarm-cpu=250m`` (a CPU limit per container instead, lifted
  when a test takes it);
- ``pool, no budget``: ``--vcluster-prewarm=1 --vcluster-prewarm-cpu=64`` (the same pool with
  no limit): what a budget buys the running test.

Per way: hand-out (the ``vcluster`` fixture's setup, from the second test on: the first never
finds a pooled one) and the test's own work (20 ConfigMaps, a Deployment of one pod until
Ready, a list), p50/p95. Goals (issue 15): hand-out p50 ≤ 0.25 s; the work no slower with the
pool refilling than in a settled vcluster without a pool.

    nice -n 10 python bench/pool.py [--tests 8] [--rounds 2] [--think 6]

Writes bench/results/pool.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kindsetup import KindSetup, log

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.versions import parse_k8s_version

RESULTS = Path(__file__).parent / "results"
CLUSTER = "pytest-vcluster-bench-pool"
#: (pytest options, seconds the test waits before its timed work).
WAYS: dict[str, tuple[list[str], float]] = {
    "no pool": (["--vcluster-prewarm=0"], 0.0),
    # A fresh vcluster is ready before its controller-manager has started its controllers
    # (they wait for every post-start hook, the readiness does not): the same without a pool,
    # but the work waits until the vcluster has settled. The baseline of "the pool does not
    # slow the running test": nothing starts beside it, nothing of its own still starting.
    "no pool, settled": (["--vcluster-prewarm=0"], 5.0),
    "pool, idle": (["--vcluster-prewarm=1"], 0.0),
    "pool, 250m": (["--vcluster-prewarm=1", "--vcluster-prewarm-cpu=250m"], 0.0),
    "pool, no budget": (["--vcluster-prewarm=1", "--vcluster-prewarm-cpu=64"], 0.0),
}

CONFTEST = """
import json, os

def pytest_runtest_logreport(report):
    if report.when == "setup" and report.passed:
        with open(os.environ["BENCH_OUT"], "a") as f:
            f.write(json.dumps({"test": report.nodeid, "setup_s": report.duration}) + "\\n")
"""

SUITE = """
import json, os, time

import pytest
from kubernetes import client

IMAGE = os.environ["BENCH_IMAGE"]


@pytest.mark.parametrize("i", range(int(os.environ["BENCH_TESTS"])))
def test_work(vcluster, i):
    core, apps = client.CoreV1Api(vcluster.api_client), client.AppsV1Api(vcluster.api_client)
    time.sleep(float(os.environ["BENCH_SETTLE"]))
    t0 = time.monotonic()
    for n in range(20):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{n}"}})
    labels = {"app": "w"}
    apps.create_namespaced_deployment("default", {
        "metadata": {"name": "w"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "c", "image": IMAGE, "imagePullPolicy": "Never",
                "command": ["sleep", "3600"]}]}}}})
    vcluster.wait_for("Deployment", "w", "Available", timeout=120, api_version="apps/v1")
    assert len(core.list_namespaced_config_map("default").items) >= 20
    work = time.monotonic() - t0
    with open(os.environ["BENCH_OUT"], "a") as f:
        f.write(json.dumps({"test": f"test_work[{i}]", "work_s": work}) + "\\n")
    time.sleep(float(os.environ["BENCH_THINK"]))
"""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 3)


def run_way(
    setup: KindSetup, args: list[str], tests: int, think: float, settle: float = 0.0
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "conftest.py").write_text(CONFTEST)
        (d / "test_suite.py").write_text(SUITE)
        out = d / "out.jsonl"
        env = {
            **os.environ,
            "BENCH_OUT": str(out),
            "BENCH_IMAGE": setup.busybox_image,
            "BENCH_TESTS": str(tests),
            "BENCH_THINK": str(think),
            "BENCH_SETTLE": str(settle),
            "PYTEST_VCLUSTER_CONTROL_PLANE_IMAGE": setup.images["controlPlane"],
            "PYTEST_VCLUSTER_SYNCER_IMAGE": setup.images["syncer"],
        }
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
             "--vcluster-host=kind", f"--vcluster-kind-cluster={CLUSTER}",
             f"--vcluster-kind-image={setup.node_image}", "--vcluster-reuse-host", *args],
            cwd=d, env=env, capture_output=True, text=True, timeout=3600, check=False,
        )  # fmt: skip
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
            raise SystemExit(f"suite failed ({args}):\n{tail}")
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    setups = [r["setup_s"] for r in rows if "setup_s" in r][1:]  # the first: never pooled
    work = [r["work_s"] for r in rows if "work_s" in r]
    return {"handout_s": setups, "work_s": work, "suite_s": round(seconds, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tests", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--think", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "pool.json")
    args = ap.parse_args()
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    k8s = parse_k8s_version(None)
    setup = KindSetup.prepare(k8s, default_cache_dir())
    host = setup.host(CLUSTER)
    existed = host.exists()
    host.start()
    samples: dict[str, dict[str, list[float]]] = {
        w: {"handout_s": [], "work_s": [], "suite_s": []} for w in WAYS
    }
    try:
        for r in range(args.rounds):
            order = list(WAYS) if r % 2 == 0 else list(reversed(WAYS))
            for way in order:
                log(f"round {r + 1}: {way}")
                options, settle = WAYS[way]
                got = run_way(setup, options, args.tests, args.think, settle)
                for key in ("handout_s", "work_s"):
                    samples[way][key] += got[key]
                samples[way]["suite_s"].append(got["suite_s"])
                log(f"  {way}: {got}")
    finally:
        if not existed:
            host.delete()
    summary = {
        way: {
            "handout_p50_s": pct(s["handout_s"], 0.5),
            "handout_p95_s": pct(s["handout_s"], 0.95),
            "work_p50_s": pct(s["work_s"], 0.5),
            "work_p95_s": pct(s["work_s"], 0.95),
            "suite_s_median": round(statistics.median(s["suite_s"]), 1),
            "samples": s,
        }
        for way, s in samples.items()
    }
    base = summary["no pool"]["work_p50_s"]
    settled = summary["no pool, settled"]["work_p50_s"]
    result = {
        "benchmark": "pool",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "kubernetes": str(k8s),
        "tests_per_suite": args.tests,
        "rounds": args.rounds,
        "think_s": args.think,
        "ways": summary,
        # The running test's own work with each pool, to the same work without a pool: in a
        # vcluster just ready, and in one that has settled (the fair baseline).
        "work_ratio_to_no_pool": {
            way: round(summary[way]["work_p50_s"] / base, 3) for way in summary if way != "no pool"
        },
        "work_ratio_to_settled": {
            way: round(summary[way]["work_p50_s"] / settled, 3) for way in summary
        },
        "goals": {
            "handout_p50_le_0_25s": summary["pool, idle"]["handout_p50_s"] <= 0.25,
            "work_not_slower_with_pool": summary["pool, idle"]["work_p50_s"] <= settled,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out}: {json.dumps({k: v for k, v in result.items() if k != 'ways'})}")
    for way, s in summary.items():
        log(f"  {way}: " + json.dumps({k: v for k, v in s.items() if k != "samples"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
