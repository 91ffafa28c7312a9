"""Benchmark: local host start-to-ready against the floor (bare etcd + kube-apiserver to /readyz).

    python bench/local_host.py [--runs 7] [--k8s-version 1.37]

Runs are interleaved (floor, host, floor, host, ...) so both see the same machine state. "cold"
runs drop the page cache first (when the kernel lets us; recorded in the result), "warm" runs do
not. Writes bench/results/local_host.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver
from pytest_vcluster.hosts.controlplane import ControlPlane, Etcd, wait_until
from pytest_vcluster.hosts.local import LocalHost, runtime_root
from pytest_vcluster.procs import ProcessGroup
from pytest_vcluster.versions import parse_k8s_version

RESULTS = Path(__file__).parent / "results"


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def floor_once(bins: dict[str, Path]) -> dict[str, float]:
    """etcd + kube-apiserver, same flags as the host's, until /readyz; credentials made first."""
    group = ProcessGroup()
    root = runtime_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        work = Path(tmp)
        cp = ControlPlane("floor", work / "cp", bins, "", "/floor", group, scheduler=False)
        cp.write_pki()
        etcd = Etcd(bins["etcd"], work, group, work / "etcd")
        t0 = time.monotonic()
        try:
            etcd.start()
            etcd.wait_ready(t0 + 60)
            cp.etcd_url = etcd.url
            from pytest_vcluster.procs import free_port

            cp.port = free_port()
            api = group.start("kube-apiserver", cp.apiserver_args(), work / "apiserver.log")
            cp.write_kubeconfigs()
            client = cp.rest()
            wait_until("floor /readyz", lambda: client.get("/readyz")[0] == 200, t0 + 60, (api,))
            ready = time.monotonic() - t0
            rss = {c.name: c.rss_bytes() for c in group.children}
        finally:
            group.stop()
    return {"ready_s": ready, **{f"rss_{k}_mib": v / 2**20 for k, v in rss.items()}}


def host_once(bins: dict[str, Path], k8s_version: str) -> dict[str, float]:
    host = LocalHost(parse_k8s_version(k8s_version), bins)
    t0 = time.monotonic()
    try:
        host.start()
        ready = time.monotonic() - t0
        rss = host.rss()
        time.sleep(3)
        settled = host.rss()
    finally:
        host.stop()
    out = {"ready_s": ready}
    out.update({f"rss_{k}_mib": v / 2**20 for k, v in rss.items()})
    out["rss_total_settled_mib"] = sum(settled.values()) / 2**20
    return out


def summarize(samples: list[dict[str, float]]) -> dict[str, float]:
    keys = samples[0].keys()
    out = {f"median_{k}": round(statistics.median(s[k] for s in samples), 3) for k in keys}
    ready = sorted(s["ready_s"] for s in samples)
    out["min_ready_s"], out["max_ready_s"] = round(ready[0], 3), round(ready[-1], 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--k8s-version", default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "local_host.json")
    args = ap.parse_args()
    k8s = parse_k8s_version(args.k8s_version)
    resolver = BinaryResolver(k8s)
    bins = {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
    versions = {t: r.version for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}

    result: dict[str, object] = {
        "benchmark": "local_host",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "versions": versions,
        "runs": args.runs,
    }
    for mode in ("cold", "warm"):
        floor, host = [], []
        dropped = []
        for i in range(args.runs):
            if mode == "cold":
                dropped.append(drop_caches())
            floor.append(floor_once(bins))
            if mode == "cold":
                dropped.append(drop_caches())
            host.append(host_once(bins, str(k8s)))
            print(
                f"{mode} run {i + 1}: floor {floor[-1]['ready_s']:.2f}s "
                f"host {host[-1]['ready_s']:.2f}s",
                file=sys.stderr,
            )
        f, h = summarize(floor), summarize(host)
        result[mode] = {
            "page_cache_dropped": all(dropped) if dropped else False,
            "floor_etcd_apiserver": f,
            "local_host": h,
            "host_minus_floor_s": round(h["median_ready_s"] - f["median_ready_s"], 3),
            "samples": {"floor": floor, "host": host},
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for mode in ("cold", "warm"):
        r = result[mode]
        assert isinstance(r, dict)
        print(
            f"{mode}: floor {r['floor_etcd_apiserver']['median_ready_s']}s, "
            f"host {r['local_host']['median_ready_s']}s, delta {r['host_minus_floor_s']}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
