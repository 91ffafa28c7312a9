"""Benchmark: the syncer killed (SIGKILL) at random points of 200 pod creations, 20 times,
on the local host: no pod lost, none duplicated, every orphan removed.

    nice -n 19 python bench/syncer_kills.py [--rounds 20] [--pods 200] [--seed 1]

A round: a namespace in the vcluster; a thread creates 200 bare pods in it one by one; at a
random moment of that (uniform over the creations' expected length) the syncer is killed
with SIGKILL, as a crash would; the vcluster's supervisor starts it again (as a kubelet
restarts a container). Then every virtual pod must be Running with exactly one host copy under
its translated name, and no host pod of the namespace may be without a virtual one. The
namespace is deleted and its host pods must all go. One kill is a test
(``tests/integration/test_syncer.py``); twenty random points are this benchmark. Writes
bench/results/syncer_kills.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubernetes import client, config

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver, default_cache_dir
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_vcluster import LocalVCluster
from pytest_vcluster.versions import parse_k8s_version
from syncer.translate.names import host_name

RESULTS = Path(__file__).parent / "results"
OBJECT_NS = "vc.pytest-vcluster.io/object-namespace"
OBJECT_NAME = "vc.pytest-vcluster.io/object-name"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def wait(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def host_copies(hcore: client.CoreV1Api, vc: LocalVCluster, ns: str) -> list[client.V1Pod]:
    pods = hcore.list_namespaced_pod(vc.host_namespace).items
    return [p for p in pods if (p.metadata.annotations or {}).get(OBJECT_NS) == ns]


def one_round(
    i: int, n: int, rng: random.Random, vc: LocalVCluster, vcore: client.CoreV1Api,
    hcore: client.CoreV1Api, create_seconds: float,
) -> dict[str, Any]:  # fmt: skip
    ns = f"kill-{i}"
    vcore.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    wait(
        lambda: (
            vcore.list_namespaced_service_account(ns, field_selector="metadata.name=default").items
        ),
        30,
        f"the default ServiceAccount of {ns}",
    )
    names = [f"p{j}" for j in range(n)]
    created: list[str] = []
    errors: list[str] = []

    def create() -> None:
        for name in names:
            body = {
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            }
            try:
                vcore.create_namespaced_pod(ns, body)
                created.append(name)
            except client.ApiException as exc:
                errors.append(f"{name}: {exc.status} {exc.reason}")

    t0 = time.monotonic()
    creator = threading.Thread(target=create)
    creator.start()
    at = rng.uniform(0.05, 0.95) * create_seconds
    time.sleep(at)
    assert vc.syncer is not None
    old_pid = vc.syncer.pid
    synced_at_kill = len(host_copies(hcore, vc, ns))
    created_at_kill = len(created)
    os.kill(old_pid, signal.SIGKILL)
    killed = time.monotonic()
    wait(lambda: vc.syncer is not None and vc.syncer.pid != old_pid, 30, "the syncer restarted")
    creator.join()
    created_seconds = time.monotonic() - t0
    expected = {host_name(name, ns, vc.name) for name in created}

    def all_synced() -> bool:
        pods = vcore.list_namespaced_pod(ns).items
        running = [p for p in pods if p.status.phase == "Running"]
        return len(running) == len(created) and len(host_copies(hcore, vc, ns)) >= len(created)

    wait(all_synced, 300, f"{len(created)} pods of {ns} running with host copies")
    recovered = time.monotonic() - killed
    time.sleep(2)  # anything duplicated or left over would show by now
    copies = host_copies(hcore, vc, ns)
    actual = Counter(p.metadata.name for p in copies)
    per_virtual = Counter((p.metadata.annotations or {}).get(OBJECT_NAME) for p in copies)
    lost = sorted(expected - set(actual))
    extra = sorted(set(actual) - expected)
    duplicated = sorted(k for k, c in per_virtual.items() if c > 1)
    vcore.delete_namespace(ns)
    wait(lambda: not host_copies(hcore, vc, ns), 300, f"host copies of {ns} removed")
    return {
        "round": i,
        "kill_after_s": round(at, 2),
        "created_at_kill": created_at_kill,
        "synced_at_kill": synced_at_kill,
        "created": len(created),
        "create_errors": errors,
        "create_seconds": round(created_seconds, 1),
        "recovered_s": round(recovered, 1),
        "lost": lost,
        "extra": extra,
        "duplicated": duplicated,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--pods", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "syncer_kills.json")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    k8s = parse_k8s_version(None)
    resolver = BinaryResolver(k8s, default_cache_dir(), download_base="off")
    binaries = {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
    rounds: list[dict[str, Any]] = []
    with LocalHost(k8s, binaries) as host, LocalVCluster(host.info(), "kills") as vc:
        vcore = client.CoreV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))
        hcore = client.CoreV1Api(host.api_client())
        # How long 200 creations take here, so the kills fall inside them.
        probe = one_round(0, args.pods, random.Random(0), vc, vcore, hcore, 0.0)
        create_seconds = probe["create_seconds"]
        log(f"{args.pods} creations take {create_seconds:.1f}s; killing at random points")
        for i in range(1, args.rounds + 1):
            r = one_round(i, args.pods, rng, vc, vcore, hcore, create_seconds)
            rounds.append(r)
            log(
                f"round {i}: killed at {r['kill_after_s']}s ({r['created_at_kill']} created, "
                f"{r['synced_at_kill']} synced), recovered in {r['recovered_s']}s, lost "
                f"{len(r['lost'])}, extra {len(r['extra'])}, duplicated {len(r['duplicated'])}"
            )
    totals = {
        k: sum(len(r[k]) for r in rounds) for k in ("lost", "extra", "duplicated", "create_errors")
    }
    result = {
        "benchmark": "syncer_kills",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "kubernetes": str(k8s),
        "pods_per_round": args.pods,
        "seed": args.seed,
        "create_seconds_probe": create_seconds,
        "recovered_p50_s": round(statistics.median(r["recovered_s"] for r in rounds), 1),
        "recovered_max_s": max(r["recovered_s"] for r in rounds),
        "totals": totals,
        "goals": {"none_lost_or_duplicated": all(v == 0 for v in totals.values())},
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out}: {totals}, goals {result['goals']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
