"""Benchmark: a leak soak. Many create → use → delete cycles of a vcluster, four at a time, on
the local host or a kind host, counting after every batch what could pile up.

    python bench/soak.py [--host local|kind] [--cycles N] [--batch N] [--parallel 4]

A cycle: a vcluster is created, gets a pod (until Running: on the local host's kwok node, or a
real container on kind), a Service and a ConfigMap, and is deleted. After each batch: host
namespaces of the run, this process's open file descriptors, threads and RSS, the batch's cycle
times, and per host — local: the processes and listening TCP ports of this process tree, work
dirs, etcd keys under ``/vcluster/``, RSS of the host's etcd and kube-apiserver; kind
(``soak_kind.py``): host pods, Helm releases, PVs, Docker containers, the working set of the
node's etcd and kube-apiserver and the node container's memory.

Goals (issue 16): every leak counter back to its start at the end, RSS growth ≤ 5 %
after the first batch (warm-up), cycle p95 of every batch ≤ 1.2 times the first's. Writes
bench/results/soak.json (kind: soak-kind.json).
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


class LocalTarget:
    """The local host: vclusters are processes of this one, pods run on kwok's node."""

    name = "local"
    # What the cycles made and must remove (compared with the start).
    leak_keys = (
        "vcluster_namespaces",
        "vcluster_namespaces_terminating",
        "vcluster_processes",
        "listening_ports",
        "work_dirs",
        "etcd_keys_vcluster",
    )
    rss_keys = ("rss_mib_pytest_like", "rss_mib_etcd", "rss_mib_kube_apiserver")

    def __init__(self, host: LocalHost) -> None:
        self.host = host
        self.info = host.info()

    def counters(self) -> dict[str, Any]:
        host, me = self.host, os.getpid()
        core = client.CoreV1Api(host.api_client())
        namespaces = [n for n in core.list_namespace().items if n.metadata.name.startswith("vc")]
        active = [n for n in namespaces if n.status.phase != "Terminating"]
        kids = descendants(me)
        host_pids = set(host.pids())
        ours = [p for p in kids if p not in host_pids]  # the vclusters' processes
        keys = etcd.get_prefix(self.info.etcd_url, "/vcluster/")
        db_size, db_used = Etcd(self.info.etcd_url).status()
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
            **runner_counters(),
            "rss_mib_etcd": round(rss.get("etcd", 0) / 2**20, 1),
            "rss_mib_kube_apiserver": round(rss.get("kube-apiserver", 0) / 2**20, 1),
        }

    def cycle(self, i: int) -> float:
        t0 = time.monotonic()
        with VCluster(self.info, f"soak-{i}", timeout=120) as vc:
            use(vc, {"image": "busybox"})
        return time.monotonic() - t0


def runner_counters() -> dict[str, Any]:
    """This process's open files, threads and RSS (it plays the pytest process)."""
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": len(os.listdir("/proc/self/task")),
        "rss_mib_pytest_like": round(rss_mib(os.getpid()), 1),
    }


def use(vc: VCluster, container: dict[str, Any]) -> None:
    """What a test does with its vcluster: a ConfigMap, a Service and a pod until Running."""
    core = client.CoreV1Api(vc.api_client)
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {"a": "1"}})
    core.create_namespaced_service(
        "default",
        {"metadata": {"name": "s"}, "spec": {"selector": {"app": "p"}, "ports": [{"port": 80}]}},
    )
    core.create_namespaced_pod(
        "default",
        {"metadata": {"name": "p", "labels": {"app": "p"}},
         "spec": {"terminationGracePeriodSeconds": 0,
                  "containers": [{"name": "c", **container}]}},
    )  # fmt: skip
    vc.wait_for("Pod", "p", "Running", timeout=120)


def run(target: Any, cycles: int, batch_size: int, parallel: int) -> dict[str, Any]:
    batches: list[dict[str, Any]] = []
    errors: list[str] = []
    t_start = time.monotonic()
    start = target.counters()
    log(f"start: {start}")
    done = 0
    with ThreadPoolExecutor(parallel) as pool:
        while done < cycles:
            n = min(batch_size, cycles - done)
            futures = [pool.submit(target.cycle, done + j) for j in range(n)]
            times = []
            for f in futures:
                try:
                    times.append(f.result())
                except Exception as exc:  # counted, and the soak goes on
                    errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")
                    log(f"cycle failed: {errors[-1]}")
            done += n
            batch = {
                "cycles_done": done,
                "cycle_p50_s": round(statistics.median(times), 3) if times else None,
                "cycle_p95_s": round(sorted(times)[int(0.95 * (len(times) - 1))], 3)
                if times
                else None,
                "errors_so_far": len(errors),
                **target.counters(),
            }
            batches.append(batch)
            log(f"batch: {batch}")
    # The namespace controller removes a deleted namespace after a fixed 5 s, more under
    # load: give the last ones two minutes before counting them.
    deadline = time.monotonic() + 120
    end = target.counters()
    while end["vcluster_namespaces_terminating"] and time.monotonic() < deadline:
        time.sleep(2)
        end = target.counters()
    warm = batches[0]
    # What the cycles made and must remove, against the start; what this process's own
    # machinery sets up once (client pools, threads), against the first batch (warm-up).
    leaks = {k: end[k] - start[k] for k in target.leak_keys} | {
        k: end[k] - warm[k] for k in ("fds", "threads")
    }
    growth = {
        k: round((batches[-1][k] - warm[k]) / warm[k] * 100, 1) if warm[k] else None
        for k in target.rss_keys
    }
    p95s = [b["cycle_p95_s"] for b in batches if b["cycle_p95_s"] is not None]
    return {
        "benchmark": "soak",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "host": target.name,
        "cycles": cycles,
        "parallel": parallel,
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", choices=("local", "kind"), default="local")
    ap.add_argument("--cycles", type=int, default=None, help="default: local 1000, kind 100")
    ap.add_argument("--batch", type=int, default=None, help="default: local 100, kind 25")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None, help="default: results/soak[-kind].json")
    args = ap.parse_args()
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    k8s = parse_k8s_version(None)
    cycles = args.cycles or (1000 if args.host == "local" else 100)
    batch = args.batch or (100 if args.host == "local" else 25)
    out = args.out or RESULTS / ("soak.json" if args.host == "local" else "soak-kind.json")
    if args.host == "local":
        resolver = BinaryResolver(k8s, default_cache_dir(), download_base="off")
        bins = {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
        with LocalHost(k8s, bins) as host:
            result = run(LocalTarget(host), cycles, batch, args.parallel)
    else:
        from soak_kind import KindTarget

        with KindTarget.started(k8s) as target:
            result = run(target, cycles, batch, args.parallel)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}: leaks {result['leaks']}, growth {result['rss_growth_pct_after_warmup']}, "
        f"goals {result['goals']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
