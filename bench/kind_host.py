"""Benchmark: the offline kind host — node image build, cluster create, first pod, memory.

    nice -n 19 python bench/kind_host.py [--runs 3] [--k8s-version 1.37] [--cold]

Measures
- node image build: "warm" (the image exists: the cost of the check), "rebuild" (``--force``:
  binaries and the debootstrap tree cached, every image rebuilt) and, with ``--cold``, "cold"
  (the node-image cache directory and every pytest-vcluster base/node image removed first:
  Go builds from a warm Go build cache, debootstrap, every image);
- per run: ``kind create cluster`` until it returns, until the node is Ready and CoreDNS runs
  (``KindHost.start``), until a first pod of a locally built image is Running; memory of each
  node container (``docker stats``) once settled; ``kind delete``.

Writes bench/results/kind_host.json. Creates clusters named ``pytest-vcluster-bench`` and deletes
them; leaves the built images in Docker.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

from pytest_vcluster.binaries import BinaryResolver, default_cache_dir
from pytest_vcluster.docker import ensure_docker
from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.versions import parse_k8s_version

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
CLUSTER = "pytest-vcluster-bench"
POD = """
apiVersion: v1
kind: Pod
metadata: {{name: first, namespace: default}}
spec:
  containers:
    - name: c
      image: {image}
      imagePullPolicy: Never
      command: ["/bin/sh", "-c", "sleep 3600"]
"""


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kind_node_build", ROOT / "images" / "kind-node" / "build.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kind_node_build"] = module
    spec.loader.exec_module(module)
    return module


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--k8s-version", default=None)
    ap.add_argument("--cold", action="store_true", help="also time a build from an empty cache")
    ap.add_argument("--out", type=Path, default=RESULTS / "kind_host.json")
    args = ap.parse_args()
    k8s = parse_k8s_version(args.k8s_version)
    cache = default_cache_dir()
    docker = ensure_docker(start=True, cache_dir=cache, progress=log)
    build = load_builder()
    builder = build.NodeImageBuilder(k8s, cache, docker=docker, progress=log)

    result: dict[str, object] = {
        "benchmark": "kind_host",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "kubernetes": str(k8s),
        "runs": args.runs,
    }
    image_build: dict[str, object] = {}
    if args.cold:
        shutil.rmtree(cache / "kind-node", ignore_errors=True)
        for repo in (
            "pytest-vcluster/kind-node",
            "pytest-vcluster/kind-base",
            "pytest-vcluster/debootstrap",
        ):
            refs = docker.out(["images", "--format", "{{.Repository}}:{{.Tag}}", repo]).split()
            if refs:
                docker.run(["rmi", "-f", *refs], check=False)
        r = builder.build(force=True)
        image_build["cold"] = {"seconds": r.seconds, "steps": r.steps}
    else:
        builder.build()  # make sure it exists before timing the rest
    r = builder.build(force=True)
    image_build["rebuild"] = {"seconds": r.seconds, "steps": r.steps}
    builder.steps = {}
    r = builder.build()
    image_build["warm"] = {"seconds": r.seconds, "built": r.built}
    size = docker.out(["image", "inspect", "-f", "{{.Size}}", r.tag])
    image_build["image"] = {"tag": r.tag, "size_mib": round(int(size) / 2**20)}
    result["node_image"] = image_build
    log(f"node image: {json.dumps(image_build)}")

    resolver = BinaryResolver(k8s, cache, download_base="off")
    kind, kubectl = resolver.resolve("kind").path, resolver.resolve("kubectl").path
    app = f"pytest-vcluster/bench-app:{int(time.time())}"
    roots = sorted((cache / "kind-node").glob("rootfs-*/bin/busybox"))
    archive = cache / "kind-node" / "bench-app.tar"
    build.write_docker_archive([build.busybox_spec(app, roots[-1])], archive)
    docker.run(["load", "-i", str(archive)])
    archive.unlink()

    samples = []
    try:
        for i in range(args.runs):
            host = KindHost(
                k8s, kind, kubectl, cache, name=CLUSTER, image=r.tag, progress=log, timeout=600
            )
            if host.exists():
                host.delete()
            t0 = time.monotonic()
            host.start()
            ready = time.monotonic() - t0
            try:
                t1 = time.monotonic()
                host.load_images([app])
                host.kubectl_run("apply", "-f", "-", input=POD.format(image=app))
                host.kubectl_run(
                    "wait", "--for=jsonpath={.status.phase}=Running", "pod/first", "--timeout=120s",
                    timeout=130,
                )  # fmt: skip
                first_pod = time.monotonic() - t1
                time.sleep(20)
                mem = {k: round(v / 2**20) for k, v in host.memory().items()}
            finally:
                host.stop()  # this run created it: the last (only) user deletes it
            sample = {
                "create_returns_s": round(host.timings["create"], 1),
                "ready_s": round(ready, 1),
                "load_image_s": round(host.timings["load"], 1),
                "first_pod_running_after_ready_s": round(first_pod, 1),
                "first_pod_running_total_s": round(ready + first_pod, 1),
                "memory_mib": mem,
                "delete_s": round(host.timings["delete"], 1),
            }
            log(f"run {i + 1}: {json.dumps(sample)}")
            samples.append(sample)
    finally:
        docker.run(["rmi", "-f", app], check=False)

    def med(key: str) -> float:
        return round(statistics.median(float(s[key]) for s in samples), 1)  # type: ignore[arg-type]

    result["cluster"] = {
        "median_create_returns_s": med("create_returns_s"),
        "median_ready_s": med("ready_s"),
        "median_first_pod_running_total_s": med("first_pod_running_total_s"),
        "median_delete_s": med("delete_s"),
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["cluster"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
