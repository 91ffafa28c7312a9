"""pytest-vcluster list/reap on kind and kubeconfig hosts: labelled namespaces and kept records."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_vcluster import reaper


def _ns(name: str, expires: float, phase: str = "Active") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/managed-by": "pytest-vcluster",
                reaper.RUN_LABEL: "run1",
                reaper.EXPIRES_LABEL: str(int(expires)),
            },
        },
        "status": {"phase": phase},
    }


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[tuple[str, ...]]]:
    (tmp_path / "kind").mkdir()
    (tmp_path / "kind" / "pytest-vcluster.kubeconfig").write_text("{}")
    (tmp_path / "kubeconfig" / "prod").mkdir(parents=True)
    (tmp_path / "kubeconfig" / "prod" / "kubeconfig").write_text("{}")
    calls: list[tuple[str, ...]] = []
    namespaces = {
        "pytest-vcluster.kubeconfig": [
            _ns("vcluster-old", 1000),
            _ns("vcluster-new", 10**10),
            _ns("vcluster-going", 1000, "Terminating"),
            _ns("vcluster-kept", 1000),
        ],
        "kubeconfig": None,  # unreachable host
    }

    def fake(cache_dir: Path, kubeconfig: Any, *args: str, timeout: float = 15) -> Any:
        calls.append((Path(kubeconfig).name, *args))
        if args[:2] == ("get", "namespaces"):
            items = namespaces[Path(kubeconfig).name]
            if items is None:
                return subprocess.CompletedProcess(args, 1, "", "connection refused")
            return subprocess.CompletedProcess(args, 0, json.dumps({"items": items}), "")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(reaper, "_host_kubectl", fake)
    monkeypatch.setattr(reaper, "runtime_root", lambda: tmp_path / "no-runtime")
    return tmp_path, calls


def test_list_shows_vcluster_namespaces_of_every_reachable_host(
    cache: tuple[Path, list[tuple[str, ...]]],
) -> None:
    cache_dir, _ = cache
    found = {f.name: f for f in reaper.inventory(cache_dir) if f.kind == "namespace"}
    assert sorted(found) == ["vcluster-going", "vcluster-kept", "vcluster-new", "vcluster-old"]
    assert "expired" in found["vcluster-old"].detail
    assert "run run1" in found["vcluster-old"].detail
    assert "kind:pytest-vcluster" in found["vcluster-old"].detail
    assert "deleting" in found["vcluster-going"].detail
    assert "expires" in found["vcluster-new"].detail


def test_reap_deletes_expired_namespaces_and_kept_in_cluster_records(
    cache: tuple[Path, list[tuple[str, ...]]],
) -> None:
    cache_dir, calls = cache
    kept = cache_dir / "kept"
    kept.mkdir()
    workdir = cache_dir / "wd"
    workdir.mkdir()
    (kept / "kept.json").write_text(
        json.dumps(
            {
                "name": "kept",
                "host_namespace": "vcluster-kept",
                "release": "kept",
                "kubeconfig": str(workdir / "kubeconfig"),
                "host_kubeconfig": str(cache_dir / "kind" / "pytest-vcluster.kubeconfig"),
                "workdir": str(workdir),
                "pids": {},
            }
        )
    )
    done = reaper.reap(cache_dir)
    deleted = [c[3] for c in calls if c[1:3] == ("delete", "namespace")]
    assert deleted == ["vcluster-kept", "vcluster-old"]  # not the fresh or terminating one
    assert ("pytest-vcluster.kubeconfig", "delete", "pods", "--all", "-n", "vcluster-old",
            "--grace-period=0", "--force", "--wait=false") in calls  # fmt: skip
    assert not (kept / "kept.json").exists()
    assert not workdir.exists()
    assert any(d.startswith("vcluster kept") for d in done)
    assert any(d.startswith("namespace vcluster-old") for d in done)
    calls.clear()
    reaper.reap(cache_dir, hosts_too=True)
    deleted = [c[3] for c in calls if c[1:3] == ("delete", "namespace")]
    assert "vcluster-new" in deleted
