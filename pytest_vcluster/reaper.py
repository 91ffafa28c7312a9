"""Find and remove what crashed or kept runs left: kept vclusters, idle hosts, stale work dirs.

Everything pytest-vcluster leaves running is recorded under the cache directory: kept vclusters
in ``kept/<name>.json`` (PIDs with start times, etcd prefix or Helm release, host namespace) and
running host supervisors in ``hosts/running/<pid>.json``. A PID is only signalled when its start
time still matches the record, so a reused PID is never hit.

On kind and kubeconfig hosts (kubeconfigs under ``<cache>/kind/*.kubeconfig`` and
``<cache>/kubeconfig/<context>/kubeconfig``) a vcluster is a host namespace labelled
``app.kubernetes.io/managed-by=pytest-vcluster`` with the run id and an expiry time: ``list``
shows them, ``reap`` deletes those whose expiry passed (``--all``: every one), even when the run
that made them was killed before it could write a record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hosts.local import reap_stale_workdirs, runtime_root
from .hosts.shared import STATE, USERS, _alive_users, _read_users, stop_supervisor
from .procs import pid_alive

MANAGED = "app.kubernetes.io/managed-by=pytest-vcluster"
RUN_LABEL = "pytest-vcluster.io/run-id"  # fixtures.RUN_LABEL (not imported: pytest-free CLI)
EXPIRES_LABEL = "pytest-vcluster.io/expires"


@dataclass
class Found:
    kind: str  # "vcluster" | "host" | "namespace"
    name: str
    alive: bool
    detail: str
    record: Path
    data: dict[str, Any]


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def inventory(cache_dir: Path) -> list[Found]:
    found: list[Found] = []
    for path in sorted((cache_dir / "kept").glob("*.json")):
        data = _load(path)
        if data is None:
            continue
        pids = data.get("pids") or {}
        alive = any(pid_alive(int(p), s) for p, s in pids.items())
        detail = f"KUBECONFIG={data['kubeconfig']}"
        if data.get("release"):
            detail += f" (release {data['release']} in host namespace {data['host_namespace']})"
        found.append(Found("vcluster", data["name"], alive, detail, path, data))
    for path in sorted((cache_dir / "hosts" / "running").glob("*.json")):
        data = _load(path)
        if data is None:
            continue
        alive = pid_alive(int(data["pid"]), data.get("starttime"))
        users = len(_alive_users(_read_users(Path(data["state_dir"]))))
        detail = f"KUBECONFIG={data['kubeconfig']} users={users} reuse={data.get('reuse')}"
        found.append(Found("host", f"local-{data['pid']}", alive, detail, path, data))
    found += cluster_namespaces(cache_dir)
    return found


def _kubectl(cache_dir: Path) -> str | None:
    cached = sorted((cache_dir / "bin").glob("kubectl-*/kubectl"))
    return str(cached[-1]) if cached else shutil.which("kubectl")


def cluster_hosts(cache_dir: Path) -> list[tuple[str, Path]]:
    """(label, kubeconfig) of the kind and kubeconfig hosts this cache knows."""
    hosts = [(f"kind:{p.stem}", p) for p in sorted((cache_dir / "kind").glob("*.kubeconfig"))]
    hosts += [
        (f"kubeconfig:{p.parent.name}", p)
        for p in sorted((cache_dir / "kubeconfig").glob("*/kubeconfig"))
    ]
    return hosts


def _host_kubectl(
    cache_dir: Path, kubeconfig: str | Path, *args: str, timeout: float = 15
) -> subprocess.CompletedProcess[str] | None:
    kubectl = _kubectl(cache_dir)
    if kubectl is None:
        return None
    try:
        return subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "--request-timeout=10s", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def cluster_namespaces(cache_dir: Path, now: float | None = None) -> list[Found]:
    """Namespaces of in-cluster vclusters on the known hosts (unreachable hosts are skipped)."""
    now = time.time() if now is None else now
    found = []
    for label, kubeconfig in cluster_hosts(cache_dir):
        proc = _host_kubectl(
            cache_dir, kubeconfig, "get", "namespaces", "-l", MANAGED, "-o", "json"
        )
        if proc is None or proc.returncode != 0:
            continue
        with contextlib.suppress(ValueError):
            for ns in json.loads(proc.stdout).get("items") or []:
                meta = ns["metadata"]
                labels = meta.get("labels") or {}
                phase = (ns.get("status") or {}).get("phase", "")
                try:
                    expires = float(labels.get(EXPIRES_LABEL, "0"))
                except ValueError:
                    expires = 0.0
                expired = expires <= now
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(expires)) if expires else "?"
                detail = (
                    f"on {label}, run {labels.get(RUN_LABEL, '?')}, "
                    f"{'expired' if expired else 'expires'} {when}"
                    + (", deleting" if phase == "Terminating" else "")
                )
                data = {
                    "namespace": meta["name"],
                    "kubeconfig": str(kubeconfig),
                    "expired": expired,
                    "terminating": phase == "Terminating",
                }
                found.append(Found("namespace", meta["name"], True, detail, kubeconfig, data))
    return found


def delete_host_namespace(cache_dir: Path, kubeconfig: str | Path, namespace: str) -> bool:
    """Delete an in-cluster vcluster's namespace (release, pods, PVCs, synced objects) without
    waiting; its pods go at once (grace 0)."""
    proc = _host_kubectl(cache_dir, kubeconfig, "delete", "namespace", namespace, "--wait=false")
    ok = proc is not None and (proc.returncode == 0 or "NotFound" in proc.stderr)
    _host_kubectl(
        cache_dir, kubeconfig, "delete", "pods", "--all", "-n", namespace,
        "--grace-period=0", "--force", "--wait=false",
    )  # fmt: skip
    return ok


def _kill_recorded(pids: dict[str, str]) -> None:
    for pid, start in pids.items():
        if pid_alive(int(pid), start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def reap(cache_dir: Path, *, hosts_too: bool = False) -> list[str]:
    """Remove kept vclusters (and idle hosts; with ``hosts_too`` every recorded host)."""
    done: list[str] = []
    items = inventory(cache_dir)
    kept_namespaces = {
        i.data.get("host_namespace")
        for i in items
        if i.kind == "vcluster" and i.data.get("release")
    }
    for item in items:
        if item.kind == "vcluster":
            _kill_recorded(item.data.get("pids") or {})
            if item.data.get("etcd_url"):  # the local runtime
                from .hosts import etcd

                with contextlib.suppress(etcd.EtcdError):  # its host (and etcd) are gone
                    etcd.delete_prefix(item.data["etcd_url"], item.data["etcd_prefix"] + "/")
            elif item.data.get("host_namespace") and item.data.get("host_kubeconfig"):
                delete_host_namespace(
                    cache_dir, item.data["host_kubeconfig"], item.data["host_namespace"]
                )
            shutil.rmtree(item.data.get("workdir", ""), ignore_errors=True)
            item.record.unlink(missing_ok=True)
            done.append(f"vcluster {item.name}")
        elif item.kind == "namespace":
            if item.data["terminating"] or item.data["namespace"] in kept_namespaces:
                continue
            if (item.data["expired"] or hosts_too) and delete_host_namespace(
                cache_dir, item.data["kubeconfig"], item.data["namespace"]
            ):
                done.append(f"namespace {item.name} ({item.detail})")
        else:
            state_dir = Path(item.data["state_dir"])
            idle = not _alive_users(_read_users(state_dir))
            if item.alive and (hosts_too or (idle and not item.data.get("reuse"))):
                stop_supervisor(int(item.data["pid"]))
                done.append(f"host {item.name}")
            if not pid_alive(int(item.data["pid"]), item.data.get("starttime")):
                item.record.unlink(missing_ok=True)
                (state_dir / STATE).unlink(missing_ok=True)
                (state_dir / USERS).unlink(missing_ok=True)
    root = runtime_root()
    if root.is_dir():
        done += [f"work dir {d}" for d in reap_stale_workdirs(root)]
    return done
