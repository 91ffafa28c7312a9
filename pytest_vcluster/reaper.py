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

from . import kept
from .hosts.local import reap_stale_workdirs, runtime_root
from .hosts.shared import STATE, USERS, _alive_users, _read_users, stop_supervisor
from .naming import EXPIRES_LABEL, RUN_LABEL
from .procs import pid_alive

MANAGED = "app.kubernetes.io/managed-by=pytest-vcluster"
__all__ = ["EXPIRES_LABEL", "RUN_LABEL", "inventory", "reap"]


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


def kept_vclusters(cache_dir: Path) -> list[Found]:
    found = []
    for path, record in kept.load_all(cache_dir):
        alive = any(pid_alive(int(p), start) for p, start in record.pids.items())
        detail = f"KUBECONFIG={record.kubeconfig}"
        if record.release:
            detail += f" (release {record.release} in host namespace {record.host_namespace})"
        found.append(Found("vcluster", record.name, alive, detail, path, {"record": record}))
    return found


def running_hosts(cache_dir: Path) -> list[Found]:
    found = []
    for path in sorted((cache_dir / "hosts" / "running").glob("*.json")):
        data = _load(path)
        if data is None:
            continue
        alive = pid_alive(int(data["pid"]), data.get("starttime"))
        users = len(_alive_users(_read_users(Path(data["state_dir"]))))
        detail = f"KUBECONFIG={data['kubeconfig']} users={users} reuse={data.get('reuse')}"
        found.append(Found("host", f"local-{data['pid']}", alive, detail, path, data))
    return found


def inventory(cache_dir: Path) -> list[Found]:
    return kept_vclusters(cache_dir) + running_hosts(cache_dir) + cluster_namespaces(cache_dir)


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


def _remove_local(cache_dir: Path, record: kept.KeptRecord) -> None:
    from .hosts import etcd

    with contextlib.suppress(etcd.EtcdError):  # its host (and etcd) are gone: nothing left
        etcd.delete_prefix(record.etcd_url, record.etcd_prefix + "/")


def _remove_release(cache_dir: Path, record: kept.KeptRecord) -> None:
    delete_host_namespace(cache_dir, record.host_kubeconfig, record.host_namespace)


REMOVE = {kept.LOCAL: _remove_local, kept.CHART: _remove_release}  # by KeptRecord.kind


def reap(cache_dir: Path, *, hosts_too: bool = False) -> list[str]:
    """Remove kept vclusters (and idle hosts; with ``hosts_too`` every recorded host)."""
    done: list[str] = []
    records = kept.load_all(cache_dir)
    kept_namespaces = {r.host_namespace for _, r in records if r.release}
    for path, record in records:
        _kill_recorded(record.pids)
        REMOVE[record.kind](cache_dir, record)
        shutil.rmtree(record.workdir, ignore_errors=True)
        path.unlink(missing_ok=True)
        done.append(f"vcluster {record.name}")
    for item in cluster_namespaces(cache_dir):
        if item.data["terminating"] or item.data["namespace"] in kept_namespaces:
            continue
        if (item.data["expired"] or hosts_too) and delete_host_namespace(
            cache_dir, item.data["kubeconfig"], item.data["namespace"]
        ):
            done.append(f"namespace {item.name} ({item.detail})")
    for item in running_hosts(cache_dir):
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
