"""Benchmark: vcluster create -> ready -> delete on the local host, density, import overhead.

    python bench/plugin.py [--vclusters 10] [--density 20]

- sequential: 10 vclusters one after another (ready time, teardown time seen by the caller,
  RSS per vcluster once idle);
- parallel: the same with two at a time (the shape of `pytest -n 2`);
- floor, in the same run: a bare kube-apiserver on the host's etcd until /readyz;
- density: start N idle vclusters together and check that every one still answers;
- import overhead: `pytest --co -q` on a file with no vcluster test, with and without the plugin.
Results: bench/results/plugin.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver
from pytest_vcluster.hosts.controlplane import ControlPlane, wait_until
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_info import LocalHostInfo as HostInfo
from pytest_vcluster.procs import ProcessGroup, free_port
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version

RESULTS = Path(__file__).parent / "results"


def q(values: list[float], p: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p * len(s)))], 3)


def one(info: HostInfo, name: str) -> dict[str, float]:
    t0 = time.monotonic()
    vc = VCluster(info, name)
    vc.create()
    ready = time.monotonic() - t0
    time.sleep(2)  # idle
    rss = sum(vc._impl.rss().values()) / 2**20
    t1 = time.monotonic()
    vc.delete()
    return {"ready_s": ready, "teardown_s": time.monotonic() - t1, "rss_mib": rss}


def floor(info: HostInfo, i: int) -> float:
    group = ProcessGroup()
    with tempfile.TemporaryDirectory(dir=Path(info.workdir)) as tmp:
        cp = ControlPlane(
            f"floor{i}", Path(tmp), info.binary_paths(), info.etcd_url, f"/floor{i}", group
        )
        cp.write_pki()
        t0 = time.monotonic()
        cp.port = free_port()
        api = group.start("kube-apiserver", cp.apiserver_args(), Path(tmp) / "api.log")
        cp.write_kubeconfigs()
        rest = cp.rest()
        wait_until("floor", lambda: rest.get("/readyz")[0] == 200, t0 + 60, (api,))
        took = time.monotonic() - t0
        group.stop(timeout=0)
    return took


def summary(samples: list[dict[str, float]]) -> dict[str, float]:
    ready = [s["ready_s"] for s in samples]
    down = [s["teardown_s"] for s in samples]
    return {
        "ready_p50_s": q(ready, 0.5),
        "ready_p95_s": q(ready, 0.95),
        "teardown_p50_s": q(down, 0.5),
        "teardown_max_s": q(down, 1.0),
        "rss_per_vcluster_mib": round(statistics.median(s["rss_mib"] for s in samples), 1),
    }


def density(info: HostInfo, n: int) -> dict[str, Any]:
    vcs = [VCluster(info, f"dense{i}", timeout=300) for i in range(n)]
    t0 = time.monotonic()
    made: list[VCluster] = []
    try:
        with ThreadPoolExecutor(2) as pool:
            for vc in pool.map(lambda v: v.create(), vcs):
                made.append(vc)
        created = time.monotonic() - t0
        time.sleep(5)
        answering = sum(1 for vc in made if vc._impl.control_plane.rest().get("/readyz")[0] == 200)  # type: ignore[union-attr]
        rss = sum(sum(vc._impl.rss().values()) for vc in made) / 2**20
        mem = Path("/proc/meminfo").read_text().split("\n")
        avail = next(int(x.split()[1]) for x in mem if x.startswith("MemAvailable")) / 2**20
        return {
            "vclusters": n,
            "answering": answering,
            "create_all_s": round(created, 1),
            "total_rss_gib": round(rss / 1024, 2),
            "mem_available_gib_after": round(avail, 1),
        }
    finally:
        for vc in made:
            vc.delete()


def import_overhead(runs: int = 5) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "test_plain.py").write_text("def test_x():\n    pass\n")

        def timed(*extra: str) -> float:
            t = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, tmp],
                check=True,
                capture_output=True,
            )
            return time.monotonic() - t

        with_plugin = statistics.median(timed() for _ in range(runs))
        without = statistics.median(timed("-p", "no:vcluster") for _ in range(runs))
    return {
        "pytest_run_with_plugin_s": round(with_plugin, 3),
        "pytest_run_without_plugin_s": round(without, 3),
        "overhead_s": round(with_plugin - without, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vclusters", type=int, default=10)
    ap.add_argument("--density", type=int, default=20)
    ap.add_argument("--out", type=Path, default=RESULTS / "plugin.json")
    args = ap.parse_args()
    k8s = parse_k8s_version(None)
    bins = {t: r.path for t, r in BinaryResolver(k8s).resolve_all(LOCAL_HOST_TOOLS).items()}
    result: dict[str, Any] = {
        "benchmark": "plugin",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": __doc__,
        "load_average_at_start": round(__import__("os").getloadavg()[0], 2),
    }
    with LocalHost(k8s, bins) as host:
        info = host.info()
        seq, floors = [], []
        for i in range(args.vclusters):
            floors.append(floor(info, i))
            seq.append(one(info, f"seq{i}"))
            print(f"seq {i}: floor {floors[-1]:.2f}s {seq[-1]}", file=sys.stderr)
        with ThreadPoolExecutor(2) as pool:
            par = list(pool.map(lambda i: one(info, f"par{i}"), range(args.vclusters)))
        result["sequential"] = summary(seq)
        result["parallel_2"] = summary(par)
        result["floor_bare_apiserver"] = {
            "ready_p50_s": q(floors, 0.5),
            "ready_p95_s": q(floors, 0.95),
        }
        result["samples"] = {"sequential": seq, "parallel_2": par, "floor": floors}
        if args.density:
            result["density"] = density(info, args.density)
    result["load_average_at_end"] = round(__import__("os").getloadavg()[0], 2)
    result["import_overhead"] = import_overhead()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "method")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
