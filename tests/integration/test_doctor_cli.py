"""``pytest-vcluster doctor`` on this machine, whose cache the set-up filled: nothing blocks."""

from __future__ import annotations

import os
import subprocess
import sys


def test_this_machine_passes_with_its_cache() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_vcluster", "doctor", "--no-docker"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTEST_VCLUSTER_DOWNLOAD_URL": "off"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for tool in ("etcd", "kube-apiserver", "kwok"):
        assert f"OK    {tool} " in proc.stdout
