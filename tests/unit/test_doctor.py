"""``pytest-vcluster doctor``: each finding, the report's exit code, and the command itself on
a machine without Go, downloads or a cache (the machine's own cache: tests/integration)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pytest_vcluster import doctor
from pytest_vcluster.doctor import Finding


def test_old_python_blocks() -> None:
    assert doctor.python_version((3, 9)).level == "fail"
    assert doctor.python_version((3, 10)).level == "ok"


def test_low_memory_is_a_warning_with_a_fix() -> None:
    low = doctor.memory("MemTotal: 4000000 kB\nMemAvailable: 1000000 kB\n")
    assert (low.level, low.detail) == ("warn", "1.0 GiB available")
    assert low.fix
    assert doctor.memory("MemAvailable: 8000000 kB\n").level == "ok"


def test_go_missing_is_a_warning() -> None:
    assert doctor.go_toolchain(lambda name: None).level == "warn"
    assert doctor.go_toolchain(lambda name: "/usr/local/go/bin/go").detail.endswith("go")


def test_report_prints_fixes_and_fails_only_on_what_blocks() -> None:
    lines: list[str] = []
    warn = Finding("warn", "docker", "no daemon", "start it")
    assert doctor.report([Finding("ok", "python", "3.11"), warn], lines.append) == 0
    assert lines[-1].strip() == "fix: start it"
    assert doctor.report([Finding("fail", "kwok", "missing", "install Go")], lines.append) == 1


def _doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_vcluster", "doctor", "--no-docker", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_machine_with_nothing_is_told_what_to_do(tmp_path: Path) -> None:
    """No cache, no Go on PATH, downloads off: exit 1, and each missing binary with its fix."""
    env = {
        **os.environ,
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",  # not /usr/local/go/bin
        "PYTEST_VCLUSTER_DOWNLOAD_URL": "off",
    }
    env = {k: v for k, v in env.items() if not k.startswith("PYTEST_VCLUSTER_KUBE")}
    proc = _doctor(env, "--cache-dir", str(tmp_path / "empty"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "WARN  go" in proc.stdout
    assert "FAIL  kube-apiserver" in proc.stdout
    assert "fix: set PYTEST_VCLUSTER_KUBE_APISERVER=/path/to/kube-apiserver" in proc.stdout
    assert list((tmp_path / "empty").glob("bin/*/kube-apiserver")) == []  # nothing obtained


def test_image_recipes_say_what_docker_will_pull() -> None:
    everything = doctor.image_recipes(lambda name: f"/usr/bin/{name}", {})
    assert everything.detail == "syncer: debootstrap (offline); control-plane entrypoint: Go here"
    nothing = doctor.image_recipes(lambda name: None, {})
    assert nothing.detail == (
        "syncer: docker build FROM python:3.11-slim; control-plane entrypoint: Go in "
        "golang:1.24 (Docker pulls python:3.11-slim, golang:1.24 where it lacks them)"
    )
    named = doctor.image_recipes(
        lambda name: f"/usr/bin/{name}", {"PYTEST_VCLUSTER_SYNCER_BASE_IMAGE": "reg/py:3.11"}
    )
    assert named.detail.startswith("syncer: docker build FROM reg/py:3.11;")
