"""Benchmark: a leak soak. Many create → use → delete cycles of a vcluster, four at a time, on
the local host, counting after every batch what could pile up.

    python bench/soak.py [--cycles 1000] [--batch 100] [--parallel 4]

A cycle: a vcluster is created, gets a pod (until Running on the host's kwok node, status back
in the vcluster), a Service and a ConfigMap, and is deleted. After each batch: host namespaces
of the run, the processes and listening TCP ports of this process tree, work dirs under the
runtime root, etcd keys under ``/vcluster/``, this process's open file descriptors and
threads, RSS of the host's etcd and kube-apiserver and of this process, and the batch's cycle
times. Goals (issue 16): every leak counter back to its start at the end, RSS growth ≤ 5 %
after the first batch (warm-up), cycle p95 of every batch ≤ 1.2 times the first's. Writes
bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver, default_cache_dir
from pytest_vcluster.hosts import etcd
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version
from syncer.etcd import Etcd

RESULTS = Path(__file__).parent / "results"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (by /proc's parent links)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        frontier += kids
    return out


def listening_ports(pids: list[int]) -> int:
    """TCP sockets in LISTEN owned by ``pids`` (inodes from /proc/net/tcp*, owners by fd)."""
    listening: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                listening.add(fields[9])
    owned = 0
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in listening:
                    owned += 1
        except OSError:
            continue
    return owned


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def counters(host: LocalHost, me: int) -> dict[str, Any]:
    core = client.CoreV1Api(host.api_client())
    namespaces = [n for n in core.list_namespace().items if n.metadata.name.startswith("vc")]
    active = [n for n in namespaces if n.status.phase != "Terminating"]
    kids = descendants(me)
    host_pids = set(host.pids())
    ours = [p for p in kids if p not in host_pids]  # the vclusters' processes
    keys = etcd.get_prefix(host.info().etcd_url, "/vcluster/")
    db_size, db_used = Etcd(host.info().etcd_url).status()
    rss = host.rss()
    return {
        "vcluster_namespaces": len(active),
        "vcluster_namespaces_terminating": len(namespaces) - len(active),
        "vcluster_processes": len(ours),
        "listening_ports": listening_ports([me, *ours]),
        "work_dirs": len(list((Path(host.workdir) / "vclusters").glob("*/"))),
        "etcd_keys_vcluster": len(keys),
        "etcd_db_mib": round(db_size / 2**20, 1),
        "etcd_db_in_use_mib": round(db_used / 2**20, 1),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": len(os.listdir("/proc/self/task")),
        "rss_mib_pytest_like": round(rss_mib(me), 1),
        "rss_mib_etcd": round(rss.get("etcd", 0) / 2**20, 1),
        "rss_mib_kube_apiserver": round(rss.get("kube-apiserver", 0) / 2**20, 1),
    }


def cycle(info: Any, i: int) -> float:
    t0 = time.monotonic()
    with VCluster(info, f"soak-{i}", timeout=120) as vc:
        core = client.CoreV1Api(vc.api_client)
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": "c"}, "data": {"a": "1"}}
        )
        core.create_namespaced_service(
            "default",
            {
                "metadata": {"name": "s"},
                "spec": {"selector": {"app": "p"}, "ports": [{"port": 80}]},
            },
        )
        core.create_namespaced_pod(
            "default",
            {"metadata": {"name": "p", "labels": {"app": "p"}},
             "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        )  # fmt: skip
        vc.wait_for("Pod", "p", "Running", timeout=60)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = ap.parse_args()
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    k8s = parse_k8s_version(None)
    resolver = BinaryResolver(k8s, default_cache_dir(), download_base="off")
    bins = {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
    me = os.getpid()
    batches: list[dict[str, Any]] = []
    errors: list[str] = []
    t_start = time.monotonic()
    with LocalHost(k8s, bins) as host:
        start = counters(host, me)
        log(f"start: {start}")
        info = host.info()
        done = 0
        with ThreadPoolExecutor(args.parallel) as pool:
            while done < args.cycles:
                n = min(args.batch, args.cycles - done)
                futures = [pool.submit(cycle, info, done + j) for j in range(n)]
                times = []
                for f in futures:
                    try:
                        times.append(f.result())
                    except Exception as exc:  # counted, and the soak goes on
                        errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")
                        log(f"cycle failed: {errors[-1]}")
                done += n
                after = counters(host, me)
                batch = {
                    "cycles_done": done,
                    "cycle_p50_s": round(statistics.median(times), 3) if times else None,
                    "cycle_p95_s": round(sorted(times)[int(0.95 * (len(times) - 1))], 3)
                    if times
                    else None,
                    "errors_so_far": len(errors),
                    **after,
                }
                batches.append(batch)
                log(f"batch: {batch}")
        # The namespace controller removes a deleted namespace after a fixed 5 s, more under
        # load: give the last ones a minute before counting them.
        deadline = time.monotonic() + 60
        end = counters(host, me)
        while end["vcluster_namespaces_terminating"] and time.monotonic() < deadline:
            time.sleep(2)
            end = counters(host, me)
    warm = batches[0]
    # What the cycles made and must remove, against the start; what this process's own
    # machinery sets up once (client pools, threads), against the first batch (warm-up).
    leaks = {
        k: end[k] - start[k]
        for k in (
            "vcluster_namespaces",
            "vcluster_namespaces_terminating",
            "vcluster_processes",
            "listening_ports",
            "work_dirs",
            "etcd_keys_vcluster",
        )
    } | {k: end[k] - warm[k] for k in ("fds", "threads")}
    growth = {
        k: round((batches[-1][k] - warm[k]) / warm[k] * 100, 1) if warm[k] else None
        for k in ("rss_mib_pytest_like", "rss_mib_etcd", "rss_mib_kube_apiserver")
    }
    p95s = [b["cycle_p95_s"] for b in batches if b["cycle_p95_s"] is not None]
    result = {
        "benchmark": "soak",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "host": "local",
        "cycles": args.cycles,
        "parallel": args.parallel,
        "seconds": round(time.monotonic() - t_start, 1),
        "start": start,
        "end": end,
        "leaks": leaks,
        "rss_growth_pct_after_warmup": growth,
        "cycle_p95_ratio_last_to_first": round(p95s[-1] / p95s[0], 3) if p95s else None,
        "errors": errors[:20],
        "error_count": len(errors),
        "goals": {
            "no_leaks": all(v <= 0 for v in leaks.values()),
            "rss_growth_le_5pct": all(v is None or v <= 5 for v in growth.values()),
            "p95_flat_le_1_2x": bool(p95s) and max(p95s) <= 1.2 * p95s[0],
        },
        "batches": batches,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out}: leaks {leaks}, growth {growth}, goals {result['goals']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
