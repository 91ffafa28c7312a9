"""Kept vclusters (``--vcluster-keep``): one record each, ``<cache>/kept/<name>.json``.

Written in one place (``save``, by the manager with what the runtime's ``detach()`` returns)
and read in one place (``load_all``: the reaper, the run's summary, the local host deciding
whether to outlive the run). ``kind`` says which runtime wrote it, so the reaper knows how to
remove it without guessing from the keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL = "local"  # processes on the local host, objects under an etcd prefix
CHART = "chart"  # a Helm release in a host namespace (kind, kubeconfig hosts)


@dataclass(frozen=True)
class KeptRecord:
    kind: str  # LOCAL or CHART
    name: str
    host_namespace: str
    kubeconfig: str  # of the vcluster, for a person's commands after the run
    workdir: str
    pids: dict[str, str] = field(default_factory=dict)  # pid -> start time (never a reused pid)
    kept_at: float = 0.0
    # LOCAL
    etcd_url: str = ""
    etcd_prefix: str = ""
    host_supervisor_pid: int = 0
    # CHART
    release: str = ""
    host_kubeconfig: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> KeptRecord:
        data: dict[str, Any] = json.loads(text)
        if "kind" not in data:  # written before records had a kind (only charts had releases)
            data["kind"] = CHART if data.get("release") else LOCAL
        if data["kind"] not in (LOCAL, CHART):
            raise ValueError(f"a kept record of unknown kind {data['kind']!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def kept_dir(cache_dir: Path) -> Path:
    return cache_dir / "kept"


def save(record: KeptRecord, cache_dir: Path) -> Path:
    d = kept_dir(cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{record.name}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(record.to_json())
    tmp.replace(path)
    return path


def load_all(cache_dir: Path) -> list[tuple[Path, KeptRecord]]:
    """Every readable record (a torn or foreign file is skipped)."""
    out = []
    for path in sorted(kept_dir(cache_dir).glob("*.json")):
        try:
            out.append((path, KeptRecord.from_json(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return out
