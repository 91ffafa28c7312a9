"""Benchmark: logs, exec and port-forward through a vcluster on kind, side by side with the same
calls straight to its host pod on the kind cluster, in the same run (alternating).

    nice -n 19 python bench/kubelet_proxy.py [--execs 40] [--mib 64] [--leak-execs 1000]

Measures, through the vcluster (its API server → the syncer's kubelet API → the host API
server → the kubelet) and directly (the host API server → the kubelet):
- exec round trip (the ``kubernetes`` client's ``stream()`` of ``true``, WebSocket v5) and
  ``kubectl exec`` (one process each); the vcluster reached as the plugin reaches it on kind
  (a node port of the kind node) and, a third side, through the plugin's port-forward (where
  the node is not routable: Docker Desktop, a remote daemon);
- log first byte (``read_namespaced_pod_log`` until its first chunk);
- port-forward: connection setup (connect + a small HTTP GET through one running
  ``kubectl port-forward``), and throughput (``--mib`` MiB from the pod's httpd);
- after ``--leak-execs`` execs through the vcluster: the syncer's open kubelet connections,
  threads and file descriptors against before.

Writes bench/results/kubelet_proxy.json. Uses the kind cluster ``pytest-vcluster-bench``
(created, and deleted at the end unless it existed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kindsetup import KindSetup, log
from kubernetes import client
from kubernetes.config import new_client_from_config
from kubernetes.stream import stream

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.hosts.incluster.forward import Forwards
from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
HOST = "pytest-vcluster-bench"
NAME = "kbench"


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=20) if len(ordered) > 1 else ordered * 19
    return {
        "p50": round(statistics.median(ordered) * 1000, 1),
        "p95": round(q[18] * 1000, 1),
        "min": round(ordered[0] * 1000, 1),
        "n": len(ordered),
    }


class Side:
    """One way to the pod: through the vcluster, or to its host pod on the kind cluster."""

    def __init__(
        self, name: str, api: client.ApiClient, kubeconfig: Path, ns: str, pod: str, kubectl: Path
    ):
        self.name, self.core, self.kubeconfig = name, client.CoreV1Api(api), kubeconfig
        self.ns, self.pod, self.kubectl = ns, pod, kubectl

    def exec_true(self) -> float:
        t0 = time.perf_counter()
        out = stream(
            self.core.connect_get_namespaced_pod_exec,
            self.pod,
            self.ns,
            command=["true"],
            stdout=True,
            stderr=True,
            _preload_content=False,
        )
        out.run_forever(timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"{self.name}: exec true returned {out.returncode}")
        return time.perf_counter() - t0

    def kubectl_exec(self) -> float:
        t0 = time.perf_counter()
        subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", "exec", "-n", self.ns,
             self.pod, "--", "true"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return time.perf_counter() - t0

    def log_first_byte(self) -> float:
        t0 = time.perf_counter()
        resp = self.core.read_namespaced_pod_log(self.pod, self.ns, _preload_content=False)
        first = resp.read(1)
        elapsed = time.perf_counter() - t0
        resp.release_conn()
        if not first:
            raise RuntimeError(f"{self.name}: empty log")
        return elapsed

    def port_forward(self) -> tuple[subprocess.Popen[str], int]:
        proc = subprocess.Popen(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", "port-forward", "-n", self.ns,
             f"pod/{self.pod}", ":8080"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
        if not m:
            proc.kill()
            raise RuntimeError(f"{self.name}: port-forward said {line!r}")
        return proc, int(m.group(1))


def connect_get(port: int) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/small", timeout=30) as resp:
        resp.read()
    return time.perf_counter() - t0


def download(port: int, size: int) -> float:
    """MiB/s of one GET of the big file."""
    t0 = time.perf_counter()
    got = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"GET /big HTTP/1.0\r\n\r\n")
        while chunk := sock.recv(1 << 20):
            got += len(chunk)
    elapsed = time.perf_counter() - t0
    if got < size:
        raise RuntimeError(f"short download: {got} of {size} bytes")
    return size / elapsed / (1 << 20)


def alternate(sides: list[Side], fn: Callable[[Side], float], n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {s.name: [] for s in sides}
    for i in range(n):
        for s in sides if i % 2 == 0 else reversed(sides):
            out[s.name].append(fn(s))
    return out


def syncer_counts(host: KindHost, vc: VCluster) -> dict[str, float]:
    script = "import os; print(len(os.listdir('/proc/1/task')), len(os.listdir('/proc/1/fd')))"
    out = host.kubectl_run(
        "exec", "-n", vc.host_namespace, f"{NAME}-0", "-c", "syncer", "--",
        "python3", "-c", script,
    ).stdout.split()  # fmt: skip
    path = f"/api/v1/namespaces/{vc.host_namespace}/pods/{NAME}-0:8081/proxy/metrics"
    metrics = host.kubectl_run("get", "--raw", path).stdout
    open_conns = sum(
        float(ln.split()[-1])
        for ln in metrics.splitlines()
        if ln.startswith("syncer_kubelet_open_connections")
    )
    return {"threads": int(out[0]), "fds": int(out[1]), "open_kubelet_connections": open_conns}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--execs", type=int, default=40)
    ap.add_argument("--connects", type=int, default=60)
    ap.add_argument("--downloads", type=int, default=5)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--leak-execs", type=int, default=1000)
    ap.add_argument("--cluster", default=HOST, help="kind cluster to use (kept if it exists)")
    ap.add_argument("--out", type=Path, default=RESULTS / "kubelet_proxy.json")
    args = ap.parse_args()
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    k8s = parse_k8s_version(None)
    cache = default_cache_dir()
    kind = KindSetup.prepare(k8s, cache)
    images, kubectl = kind.images, kind.kubectl
    host = kind.host(args.cluster)
    existed = host.exists()
    host.start()
    app = kind.busybox_image
    vc = VCluster(host.info(), NAME, images=images, timeout=240, progress=log)
    result: dict[str, Any] = {
        "benchmark": "kubelet_proxy",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "kubernetes": str(k8s),
        "load_at_start": round(os.getloadavg()[0], 1),
    }
    try:
        vc.create()
        script = (
            "mkdir -p /www && echo hi > /www/small && "
            f"dd if=/dev/urandom of=/www/big bs=1048576 count={args.mib} 2>/dev/null && "
            "echo ready && exec httpd -f -p 8080 -h /www"
        )
        vc.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "target"},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "c",
                            "image": app,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", script],
                            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        }
                    ],
                },
            }
        )
        vc.wait_for("Pod", "target", "Ready", timeout=180)
        sides = [
            Side("vcluster", vc.api_client, vc.kubeconfig_path, "default", "target", kubectl),
            Side(
                "direct",
                new_client_from_config(str(host.kubeconfig_path)),
                host.kubeconfig_path,
                vc.host_namespace,
                vc.host_name("target"),
                kubectl,
            ),
        ]
        result["vcluster_server"] = vc_server = yaml.safe_load(vc.kubeconfig_path.read_text())[
            "clusters"
        ][0]["cluster"]["server"]
        # The same vcluster through the plugin's port-forward (the cert names 127.0.0.1).
        tunnel = Forwards(str(host.kubeconfig_path), vc.host_namespace, f"{NAME}-0")
        tunnel.start(time.monotonic() + 60)
        pf_config = yaml.safe_load(vc.kubeconfig_path.read_text())
        pf_config["clusters"][0]["cluster"]["server"] = tunnel.server
        pf_path = vc.kubeconfig_path.with_name("kubeconfig-port-forward")
        pf_path.write_text(yaml.safe_dump(pf_config))
        if tunnel.server == vc_server:
            raise RuntimeError("the vcluster side goes through a port-forward already")
        pf_side = Side(
            "vcluster_port_forward", new_client_from_config(str(pf_path)), pf_path, "default",
            "target", kubectl,
        )  # fmt: skip
        three = [*sides, pf_side]
        for s in three:  # warm every path (TLS sessions, the kubelet's CRI connection)
            for _ in range(3):
                s.exec_true()
        runs: dict[str, Any] = {}
        log("exec round trips")
        runs["exec_stream"] = alternate(three, Side.exec_true, args.execs)
        runs["exec_kubectl"] = alternate(three, Side.kubectl_exec, max(10, args.execs // 4))
        log("log first byte")
        runs["log_first_byte"] = alternate(three, Side.log_first_byte, args.execs)
        tunnel.stop()
        forwards = {s.name: s.port_forward() for s in sides}
        try:
            for _, port in forwards.values():
                connect_get(port)
            log("port-forward connection setup")
            runs["portforward_connect"] = alternate(
                sides, lambda s: connect_get(forwards[s.name][1]), args.connects
            )
            log("port-forward throughput")
            size = args.mib << 20
            mibs = alternate(sides, lambda s: download(forwards[s.name][1], size), args.downloads)
        finally:
            for proc, _ in forwards.values():
                proc.kill()
                proc.wait()
        for key, values in runs.items():
            result[key] = {side: ms(v) for side, v in values.items()}
            result[key]["overhead_p50_ms"] = round(
                result[key]["vcluster"]["p50"] - result[key]["direct"]["p50"], 1
            )
            if "vcluster_port_forward" in values:
                result[key]["port_forward_overhead_p50_ms"] = round(
                    result[key]["vcluster_port_forward"]["p50"] - result[key]["direct"]["p50"], 1
                )
        result["portforward_mib_s"] = {
            side: {"median": round(statistics.median(v), 1), "runs": [round(x, 1) for x in v]}
            for side, v in mibs.items()
        }
        result["portforward_throughput_ratio"] = round(
            result["portforward_mib_s"]["vcluster"]["median"]
            / result["portforward_mib_s"]["direct"]["median"],
            3,
        )
        log(f"{args.leak_execs} execs through the vcluster (leak check)")
        before = syncer_counts(host, vc)
        t0 = time.monotonic()
        for _ in range(args.leak_execs):
            sides[0].exec_true()
        elapsed = time.monotonic() - t0
        time.sleep(3)  # connections close asynchronously (TLS close_notify)
        after = syncer_counts(host, vc)
        result["leak_check"] = {
            "execs": args.leak_execs,
            "seconds": round(elapsed, 1),
            "before": before,
            "after": after,
        }
        result["goals"] = {
            "exec_overhead_p50_ms_le_20": result["exec_stream"]["overhead_p50_ms"] <= 20,
            "portforward_throughput_ge_80pct": result["portforward_throughput_ratio"] >= 0.8,
            "no_leak": after["open_kubelet_connections"] == 0
            and after["threads"] <= before["threads"]
            and after["fds"] <= before["fds"],
        }
    finally:
        vc.delete()
        if not existed:
            host.delete()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
