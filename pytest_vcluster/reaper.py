"""Find and remove what crashed or kept runs left: kept vclusters, idle hosts, stale work dirs.

Everything pytest-vcluster leaves running is recorded under the cache directory: kept vclusters
in ``kept/<name>.json`` (PIDs with start times, etcd prefix, host namespace) and running host
supervisors in ``hosts/running/<pid>.json``. A PID is only signalled when its start time still
matches the record, so a reused PID is never hit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hosts.local import reap_stale_workdirs, runtime_root
from .hosts.shared import STATE, USERS, _alive_users, _read_users, stop_supervisor
from .procs import pid_alive


@dataclass
class Found:
    kind: str  # "vcluster" | "host"
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
        found.append(
            Found("vcluster", data["name"], alive, f"KUBECONFIG={data['kubeconfig']}", path, data)
        )
    for path in sorted((cache_dir / "hosts" / "running").glob("*.json")):
        data = _load(path)
        if data is None:
            continue
        alive = pid_alive(int(data["pid"]), data.get("starttime"))
        users = len(_alive_users(_read_users(Path(data["state_dir"]))))
        detail = f"KUBECONFIG={data['kubeconfig']} users={users} reuse={data.get('reuse')}"
        found.append(Found("host", f"local-{data['pid']}", alive, detail, path, data))
    return found


def _kill_recorded(pids: dict[str, str]) -> None:
    for pid, start in pids.items():
        if pid_alive(int(pid), start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def reap(cache_dir: Path, *, hosts_too: bool = False) -> list[str]:
    """Remove kept vclusters (and idle hosts; with ``hosts_too`` every recorded host)."""
    done: list[str] = []
    for item in inventory(cache_dir):
        if item.kind == "vcluster":
            from .hosts.local_vcluster import _etcd_delete_prefix

            _kill_recorded(item.data.get("pids") or {})
            _etcd_delete_prefix(item.data["etcd_url"], item.data["etcd_prefix"] + "/")
            shutil.rmtree(item.data.get("workdir", ""), ignore_errors=True)
            item.record.unlink(missing_ok=True)
            done.append(f"vcluster {item.name}")
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
