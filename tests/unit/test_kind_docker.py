"""Docker checks for the kind host: capability detection, daemon.json, and clear errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pytest_vcluster.docker import (
    SHIM_RUNTIME,
    DockerNotInstalledError,
    DockerNotRunningError,
    bounding_set,
    ensure_docker,
    find_cli,
    is_cgroup_v1,
    missing_caps,
    needs_cap_shim,
    shim_config,
)

FULL = "CapInh:\t0000000000000000\nCapBnd:\t000001ffffffffff\n"
NO_SYS_RESOURCE = "CapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\n"


def test_bounding_set_parses_proc_status() -> None:
    assert bounding_set(NO_SYS_RESOURCE) == 0x1FFFEFFFFFF


def test_shim_only_where_cap_sys_resource_is_missing() -> None:
    assert needs_cap_shim(NO_SYS_RESOURCE) is True
    assert needs_cap_shim(FULL) is False


def test_missing_caps_lists_absent_bits() -> None:
    assert missing_caps(0x1FFFEFFFFFF, 40) == [24]
    assert missing_caps(0x1FFFFFFFFFF, 40) == []


def test_shim_config_keeps_other_settings() -> None:
    cfg = shim_config({"log-level": "warn", "runtimes": {"other": {"path": "/x"}}}, Path("/s"))
    assert cfg["log-level"] == "warn"
    assert cfg["default-runtime"] == SHIM_RUNTIME
    assert cfg["runtimes"] == {"other": {"path": "/x"}, SHIM_RUNTIME: {"path": "/s"}}


def test_cgroup_version_detection(tmp_path: Path) -> None:
    assert is_cgroup_v1(tmp_path) is True
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert is_cgroup_v1(tmp_path) is False


def test_missing_docker_cli_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DockerNotInstalledError, match=r"apt-get install docker\.io"):
        find_cli()


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")
def test_daemon_not_running_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(DockerNotRunningError, match="not running"):
        ensure_docker(start=False, cache_dir=tmp_path)


def test_this_host_reports_its_capabilities() -> None:
    bnd = bounding_set()
    assert bnd > 0
    assert needs_cap_shim() is (not bnd >> 24 & 1)
    assert os.path.exists("/proc/self/status")
