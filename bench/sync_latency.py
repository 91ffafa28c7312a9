"""Benchmark: syncer latency, CPU and memory, side by side with the host floor.

    python bench/sync_latency.py [--pods 100,1000] [--rates 0,100] [--runs 3] [--configmaps 10000]

For each rate (0: a burst from 8 threads, as fast as the virtual API server takes the creates;
else that many pods per second, as a ReplicaSet is paced by its controller-manager) and size,
every run creates N pods in a fresh virtual namespace and measures, per pod:
  - down: virtual create returned -> host pod seen by a host watch (the syncer's latency)
  - up:   host pod Running (host watch) -> virtual pod Running (virtual watch)
and, in the same run, the floor: the same N pods created the same way directly in a host
namespace, from create returned -> seen by a host watch, and from create sent -> seen (a syncer
cannot beat the latter: it has to send the host create itself). Host API latency is probed
(GET) every 100 ms during the load. Syncer CPU seconds and peak RSS come from /proc, its API
requests per pod from its /metrics. The ratios, same run: the burst until every pod is Running
through the vcluster vs. created on the host (``ratio_burst_<n>_running``), the CPU of all
processes per pod through the vcluster vs. on the host (``cpu_ratio_per_pod``), and
``--sequential N`` pods one at a time, virtual create -> host pod seen vs. host create -> seen.
Results: bench/results/syncer.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_vcluster import LocalVCluster
from pytest_vcluster.versions import parse_k8s_version
from syncer.constants import NAMESPACE_LABEL, OBJECT_NAME, OBJECT_NAMESPACE
from syncer.kube import Kube

RESULTS = Path(__file__).parent / "results"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 2)  # ms


class Watcher(threading.Thread):
    """Records when each object is first seen and first seen Running."""

    def __init__(self, kube: Kube, path: str, key: Any) -> None:
        super().__init__(daemon=True)
        self.kube, self.path, self.key = kube, path, key
        self.seen: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            if not self.stop.is_set():  # after stop: the servers are going away
                raise

    def _run(self) -> None:
        rv = self.kube.get(self.path, limit=1)["metadata"]["resourceVersion"]
        self.ready.set()
        while not self.stop.is_set():
            for ev in self.kube.watch(self.path, rv, timeout_seconds=60, params={}):
                obj = ev.get("object") or {}
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if ev.get("type") not in ("ADDED", "MODIFIED"):
                    continue
                k = self.key(obj)
                if k is None:
                    continue
                now = time.monotonic()
                self.seen.setdefault(k, now)
                if (obj.get("status") or {}).get("phase") == "Running":
                    self.running.setdefault(k, now)
                if self.stop.is_set():
                    return


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "yes"}},
        "spec": {"containers": [{"name": "c", "image": "bench"}]},
    }


def create_all(
    kube: Kube,
    ns: str,
    n: int,
    prefix: str,
    started: dict[str, float] | None = None,
    rate: float = 0.0,
) -> dict[str, float]:
    """Create n pods from 8 threads, as fast as the API server takes them or, with ``rate``,
    that many per second; returns when each create returned (and fills ``started`` with when
    each was sent)."""
    done: dict[str, float] = {}
    t0 = time.monotonic()

    def one(i: int) -> None:
        name = f"{prefix}-{i}"
        if rate:
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        if started is not None:
            started[name] = time.monotonic()
        kube.create(f"/api/v1/namespaces/{ns}/pods", pod(name))
        done[name] = time.monotonic()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))
    return done


def wait(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def api_requests(vc: LocalVCluster) -> dict[str, float]:
    """The syncer's request counters per API server ("virtual", "host") and per API server
    and request kind ("virtual POST pods/binding"), from its /metrics."""
    text = urllib.request.urlopen(f"http://{vc.syncer_health}/metrics", timeout=10).read()
    out: dict[str, float] = {}
    for m in re.finditer(r'syncer_api_requests_total\{server="(\w+)"\} (\d+)', text.decode()):
        out[m.group(1)] = float(m.group(2))
    kinds = r'syncer_api_requests_by_kind_total\{server="(\w+)",kind="([^"]+)"\} (\d+)'
    for m in re.finditer(kinds, text.decode()):
        out[f"{m.group(1)} {m.group(2)}"] = float(m.group(3))
    return out


def per_pod(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Requests per pod of each kind sent meanwhile (kinds below 0.05 per pod left out)."""
    out = {k: round((v - before.get(k, 0.0)) / n, 2) for k, v in after.items() if " " in k}
    return {k: v for k, v in sorted(out.items()) if v >= 0.05}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Probe(threading.Thread):
    def __init__(self, kube: Kube, path: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.kube, self.path, self.pid = kube, path, pid
        self.latencies: list[float] = []
        self.peak_rss = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            t = time.monotonic()
            self.kube.get(self.path, limit=1)
            self.latencies.append(time.monotonic() - t)
            self.peak_rss = max(self.peak_rss, rss_mib(self.pid))


def process_cpu(h: LocalHost, vc: LocalVCluster) -> dict[str, float]:
    """CPU seconds so far of every process of the host and the vcluster, by role."""
    out: dict[str, float] = {}
    for side, group in (("host", h.procs), ("vcluster", vc.procs)):
        for c in group.children:
            with contextlib.suppress(OSError):
                out[f"{side}:{c.name}"] = cpu_seconds(c.pid)
    return out


def watch_both_sides(
    host: Kube, virtual: Kube, vc: LocalVCluster, vns: str, fns: str
) -> tuple[Watcher, Watcher]:
    """Namespace ``vns`` in the vcluster and ``fns`` (the floor's) on the host, and running
    watches of the host pods synced from ``vns`` and of the pods in ``fns``."""
    virtual.create("/api/v1/namespaces", {"metadata": {"name": vns}})
    host.create("/api/v1/namespaces", {"metadata": {"name": fns}})

    def vkey(o: dict[str, Any]) -> str | None:
        ann = o["metadata"].get("annotations") or {}
        return ann.get(OBJECT_NAME) if ann.get(OBJECT_NAMESPACE) == vns else None

    hw = Watcher(host, f"/api/v1/namespaces/{vc.host_namespace}/pods", vkey)
    fw = Watcher(host, f"/api/v1/namespaces/{fns}/pods", lambda o: o["metadata"]["name"])
    for w in (hw, fw):
        w.start()
        w.ready.wait(10)
    return hw, fw


def run_pods(
    h: LocalHost, host: Kube, virtual: Kube, vc: LocalVCluster, n: int, run: int, rate: float
) -> dict[str, Any]:
    vns, fns = f"bench-{n}-{run}", f"floor-{n}-{run}"
    hw, fw = watch_both_sides(host, virtual, vc, vns, fns)
    vw = Watcher(virtual, f"/api/v1/namespaces/{vns}/pods", lambda o: o["metadata"]["name"])
    vw.start()
    vw.ready.wait(10)
    assert vc.syncer is not None
    spid = vc.syncer.pid
    probe = Probe(host, "/api/v1/namespaces/default/pods", spid)
    probe.start()
    cpu0, req0, procs0 = cpu_seconds(spid), api_requests(vc), process_cpu(h, vc)
    t0 = time.monotonic()
    created = create_all(virtual, vns, n, "p", rate=rate)
    create_s = time.monotonic() - t0
    ok = wait(lambda: len(vw.running) >= n, 120 + n * 0.2)
    cpu = cpu_seconds(spid) - cpu0
    # Where the machine's CPU went until every virtual pod ran (2 cores shared by all).
    procs_cpu = {k: round(v - procs0.get(k, 0.0), 2) for k, v in process_cpu(h, vc).items()}
    req1 = api_requests(vc)
    virtual_all_running_s = max(vw.running.values(), default=t0) - t0
    floor_started: dict[str, float] = {}
    floor_procs0 = process_cpu(h, vc)
    t0 = time.monotonic()
    floor_created = create_all(host, fns, n, "p", floor_started, rate=rate)
    floor_create_s = time.monotonic() - t0
    wait(lambda: len(fw.running) >= n, 120 + n * 0.2)
    floor_all_running_s = max(fw.running.values(), default=t0) - t0
    floor_cpu = sum(v - floor_procs0.get(k, 0.0) for k, v in process_cpu(h, vc).items())
    probe.stop.set()
    for w in (hw, vw, fw):
        w.stop.set()
    down = [hw.seen[k] - t for k, t in created.items() if k in hw.seen]
    up = [vw.running[k] - hw.running[k] for k in created if k in vw.running and k in hw.running]
    floor = [fw.seen[k] - t for k, t in floor_created.items() if k in fw.seen]
    # What a syncer cannot beat: its own host create round trip, then the watch.
    floor_sent = [fw.seen[k] - t for k, t in floor_started.items() if k in fw.seen]
    floor_running = [fw.running[k] - t for k, t in floor_created.items() if k in fw.running]
    e2e = [vw.running[k] - t for k, t in created.items() if k in vw.running]
    for path in (f"/api/v1/namespaces/{vns}", f"/api/v1/namespaces/{fns}"):
        (virtual if "bench" in path else host).delete(path)
    # The next run starts on a clean slate, not while these pods are torn down on both sides.
    synced = f"/api/v1/namespaces/{vc.host_namespace}/pods"
    wait(
        lambda: (
            not host.get(synced, labelSelector=f"{NAMESPACE_LABEL}={vns}", limit=1)["items"]
            and not host.get(f"/api/v1/namespaces/{fns}/pods", limit=1)["items"]
            and not virtual.get(f"/api/v1/namespaces/{vns}/pods", limit=1)["items"]
        ),
        300,
    )
    first = min(created.values())
    return {
        "pods": n,
        "rate_per_s": rate or "burst",
        "all_running": ok,
        # Throughput: how long the burst of virtual creates took, and until the syncer had
        # created the last host pod (the floor's burst of host creates, for comparison).
        "virtual_create_s": round(create_s, 2),
        "last_host_pod_s": round(max(hw.seen.values(), default=first) - first, 2),
        "floor_create_s": round(floor_create_s, 2),
        "down_p50_ms": pct(down, 0.5),
        "down_p99_ms": pct(down, 0.99),
        "up_p50_ms": pct(up, 0.5),
        "up_p99_ms": pct(up, 0.99),
        "virtual_create_to_running_p50_ms": pct(e2e, 0.5),
        "floor_create_to_watch_p50_ms": pct(floor, 0.5),
        "floor_create_to_watch_p99_ms": pct(floor, 0.99),
        "floor_send_to_watch_p50_ms": pct(floor_sent, 0.5),
        "floor_send_to_watch_p99_ms": pct(floor_sent, 0.99),
        "floor_create_to_running_p50_ms": pct(floor_running, 0.5),
        "host_api_probe_p99_ms": pct(probe.latencies, 0.99),
        "syncer_cpu_s": round(cpu, 2),
        "syncer_cpu_ms_per_pod": round(cpu * 1000 / n, 2),
        "syncer_host_requests_per_pod": round((req1.get("host", 0) - req0.get("host", 0)) / n, 2),
        "syncer_virtual_requests_per_pod": round(
            (req1.get("virtual", 0) - req0.get("virtual", 0)) / n, 2
        ),
        "syncer_requests_per_pod_by_kind": per_pod(req0, req1, n),
        "syncer_peak_rss_mib": round(probe.peak_rss, 1),
        "process_cpu_s": procs_cpu,
        # The ratios: until every pod runs, and all processes' CPU per pod, vcluster / host.
        "virtual_all_running_s": round(virtual_all_running_s, 2),
        "floor_all_running_s": round(floor_all_running_s, 2),
        "ratio_all_running": round(virtual_all_running_s / floor_all_running_s, 3),
        "cpu_all_ms_per_pod": round(sum(procs_cpu.values()) * 1000 / n, 2),
        "floor_cpu_all_ms_per_pod": round(floor_cpu * 1000 / n, 2),
        "cpu_ratio_per_pod": round(sum(procs_cpu.values()) / floor_cpu, 3),
        # Other work on the machine skews every latency here; the floor shares it.
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def run_sequential(host: Kube, virtual: Kube, vc: LocalVCluster, n: int) -> dict[str, Any]:
    """n pods one at a time: virtual create sent -> its host pod seen by a host watch, vs. a
    host create sent -> seen (the floor), alternating pod by pod."""
    vns, fns = "seq", "seq-floor"
    hw, fw = watch_both_sides(host, virtual, vc, vns, fns)
    through, floor = [], []
    for i in range(n):
        for kube, ns, watcher, out in ((virtual, vns, hw, through), (host, fns, fw, floor)):
            name = f"s-{i}"
            t = time.monotonic()
            kube.create(f"/api/v1/namespaces/{ns}/pods", pod(name))
            while name not in watcher.seen and time.monotonic() - t < 30:
                time.sleep(0.001)
            if name in watcher.seen:
                out.append(watcher.seen[name] - t)
    for w in (hw, fw):
        w.stop.set()
    virtual.delete(f"/api/v1/namespaces/{vns}")
    host.delete(f"/api/v1/namespaces/{fns}")
    return {
        "pods": n,
        "sequential_p50_ms": pct(through, 0.5),
        "sequential_p99_ms": pct(through, 0.99),
        "sequential_floor_p50_ms": pct(floor, 0.5),
        "sequential_floor_p99_ms": pct(floor, 0.99),
        "goal": "sequential_p50_ms <= sequential_floor_p50_ms + 20",
        "goal_met": pct(through, 0.5) <= pct(floor, 0.5) + 20,
    }


def run_configmaps(host: Kube, virtual: Kube, vc: LocalVCluster, n: int) -> dict[str, Any]:
    ns = "cms"
    virtual.create("/api/v1/namespaces", {"metadata": {"name": ns}})

    def key(o: dict[str, Any]) -> str | None:
        ann = o["metadata"].get("annotations") or {}
        return ann.get(OBJECT_NAME) if ann.get(OBJECT_NAMESPACE) == ns else None

    hw = Watcher(host, f"/api/v1/namespaces/{vc.host_namespace}/configmaps", key)
    hw.start()
    hw.ready.wait(10)
    created: dict[str, float] = {}

    def one(i: int) -> None:
        virtual.create(
            f"/api/v1/namespaces/{ns}/configmaps",
            {"metadata": {"name": f"cm-{i}"}, "data": {"k": str(i)}},
        )
        created[f"cm-{i}"] = time.monotonic()

    assert vc.syncer is not None
    cpu0 = cpu_seconds(vc.syncer.pid)
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))
    ok = wait(lambda: len(hw.seen) >= n, 600)
    lat = [hw.seen[k] - t for k, t in created.items() if k in hw.seen]
    hw.stop.set()
    return {
        "configmaps": n,
        "all_synced": ok,
        "create_seconds": round(max(created.values()) - t0, 2),
        "down_p50_ms": pct(lat, 0.5),
        "down_p99_ms": pct(lat, 0.99),
        "syncer_cpu_s": round(cpu_seconds(vc.syncer.pid) - cpu0, 2),
        "syncer_rss_mib": round(rss_mib(vc.syncer.pid), 1),
    }


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in samples[0].items() if isinstance(v, (int, float)) and k != "pods"]
    return {f"median_{k}": round(statistics.median(s[k] for s in samples), 2) for k in keys}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", default="100,1000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--rates",
        default="0,100",
        help="creation rates in pods/s, 0: a burst from 8 threads (a ReplicaSet is paced by "
        "its controller-manager's client: 20 requests/s by default)",
    )
    ap.add_argument("--configmaps", type=int, default=10000)
    ap.add_argument("--sequential", type=int, default=100, help="pods one at a time (0: none)")
    ap.add_argument("--out", type=Path, default=RESULTS / "syncer.json")
    ap.add_argument("--syncer-arg", action="append", default=[], help="extra syncer flag")
    args = ap.parse_args()
    k8s = parse_k8s_version(None)
    bins = {t: r.path for t, r in BinaryResolver(k8s).resolve_all(LOCAL_HOST_TOOLS).items()}
    result: dict[str, Any] = {
        "benchmark": "syncer",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": args.runs,
        "syncer_args": args.syncer_arg,
        "method": __doc__,
        "pods": {},
    }
    with LocalHost(k8s, bins) as h:
        with LocalVCluster(h.info(), "bench", syncer_args=tuple(args.syncer_arg)) as vc:
            host = Kube.from_kubeconfig(str(h.kubeconfig_path), name="host")
            virtual = Kube.from_kubeconfig(str(vc.kubeconfig_path), name="virtual")
            if args.sequential:
                result["sequential"] = run_sequential(host, virtual, vc, args.sequential)
                print(f"sequential: {result['sequential']}", file=sys.stderr)
            for rate in (float(x) for x in args.rates.split(",") if x):
                for n in (int(x) for x in args.pods.split(",") if x):
                    samples = []
                    for run in range(args.runs):
                        samples.append(run_pods(h, host, virtual, vc, n, run, rate))
                        print(f"pods={n} rate={rate} run={run + 1}: {samples[-1]}", file=sys.stderr)
                    key = f"{n}" if not rate else f"{n}@{rate:g}/s"
                    result["pods"][key] = {"summary": summarize(samples), "samples": samples}
                    if not rate:
                        summary = result["pods"][key]["summary"]
                        result[f"ratio_burst_{n}_running"] = summary["median_ratio_all_running"]
                        result["cpu_ratio_per_pod"] = summary[
                            "median_cpu_ratio_per_pod"
                        ]  # the last (largest) burst
        if args.configmaps:
            with LocalVCluster(
                h.info(), "benchcm", syncer_args=("--sync-all-configmaps-secrets",)
            ) as vc:
                host = Kube.from_kubeconfig(str(h.kubeconfig_path), name="host")
                virtual = Kube.from_kubeconfig(str(vc.kubeconfig_path), name="virtual")
                result["configmaps"] = run_configmaps(host, virtual, vc, args.configmaps)
                print(f"configmaps: {result['configmaps']}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v["summary"] for k, v in result["pods"].items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
