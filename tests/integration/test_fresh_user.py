"""A user with internet and no Go: an empty cache, no ``go`` on PATH, the official download sites
served by a real HTTP server on 127.0.0.1 (their layouts: dl.k8s.io, etcd's GitHub release with
SHA256SUMS, kwok's release asset with its digest in GitHub's releases API). The README's set-up
and the example suite run as they would for that user, and every binary comes from a verified
download (the bytes served are this machine's real binaries)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from download_mirror import path_without, serve_mirror

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS
from pytest_vcluster.versions import parse_k8s_version

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The download sites' paths, with this machine's real binaries in them."""
    root = tmp_path_factory.mktemp("mirror")
    with serve_mirror(LOCAL_HOST_TOOLS, parse_k8s_version(None), root) as url:
        yield url


def test_a_user_without_go_gets_a_local_vcluster(mirror: str, tmp_path: Path) -> None:
    no_go = path_without("go", "gofmt", bin_dir=tmp_path / "bin", path=os.environ["PATH"])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_VCLUSTER_")},
        "PATH": no_go,
        "PYTEST_VCLUSTER_DOWNLOAD_URL": mirror,
        "PYTEST_VCLUSTER_CACHE_DIR": str(tmp_path / "cache"),
    }
    cli = [sys.executable, "-m", "pytest_vcluster"]
    setup = subprocess.run(
        [*cli, "binaries", "--build", "--tools", ",".join(LOCAL_HOST_TOOLS)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stdout + setup.stderr
    for tool in LOCAL_HOST_TOOLS:
        assert f"{tool} " in setup.stdout
    assert setup.stdout.count(" download ") == len(LOCAL_HOST_TOOLS), setup.stdout
    doctor = subprocess.run(
        [*cli, "doctor", "--no-docker"], env=env, capture_output=True, text=True, timeout=120
    )
    assert doctor.returncode == 0, doctor.stdout
    assert "WARN  go" in doctor.stdout
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/basics", "-q", "-p", "no:cacheprovider"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert suite.returncode == 0, suite.stdout[-3000:] + suite.stderr[-2000:]
    assert " passed" in suite.stdout
