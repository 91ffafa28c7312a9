"""The syncer image's Python packages come as wheels for the image's interpreter (bookworm's
CPython 3.11) whichever Python runs the build: resolved here by another interpreter's pip,
against the real package index."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_vcluster.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
# An interpreter other than the image's 3.11 (pyenv's shims are left out: they may select none).
OTHER = sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.1[2-9]*/bin/python")) + [
    p for p in [shutil.which("python3.12")] if p and "shims" not in p
]


@pytest.mark.skipif(not OTHER, reason="no Python 3.12 on this machine to build with")
def test_another_python_resolves_cp311_wheels(tmp_path: Path) -> None:
    build = load_script(ROOT / "images" / "syncer" / "build.py", "syncer_build_wheels_test")
    report = tmp_path / "report.json"
    subprocess.run(
        [OTHER[0], "-m", "pip", "install", "-q", "--disable-pip-version-check", "--dry-run",
         "--ignore-installed", "--target", str(tmp_path / "t"), "--report", str(report),
         *build.target_interpreter(), *build.SyncerImage.requirements()],
        check=True, timeout=300,
    )  # fmt: skip
    wheels = [
        i["download_info"]["url"].rsplit("/", 1)[-1]
        for i in json.loads(report.read_text())["install"]
    ]
    binary = [w for w in wheels if not w.endswith("-none-any.whl")]
    assert binary, wheels  # cryptography, cffi, pyyaml: compiled ones
    for wheel in binary:
        assert "cp311" in wheel or "abi3" in wheel, wheel  # never 3.12's
