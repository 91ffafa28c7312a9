"""The oldest and newest Pythons the project supports (3.10, 3.13): this project's wheel and its
dependencies from the package index installed into a fresh virtualenv of that interpreter, then
an example suite on the local host run by it — the plugin, its fixtures and the syncer (a child
process of that interpreter) all on that version. The Kubernetes binaries come from the shared
cache, as for any user who ran the set-up once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vcluster.binaries import default_cache_dir

ROOT = Path(__file__).resolve().parents[2]


def _interpreter(minor: str) -> Path | None:
    """An installed CPython ``minor`` (pyenv's versions, then the system's; not pyenv's shims,
    which may select none)."""
    found = sorted(Path.home().glob(f".pyenv/versions/{minor}.*/bin/python{minor}"))
    found += [p for p in (Path(f"/usr/bin/python{minor}"),) if p.is_file()]
    return found[-1] if found else None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        check=True, timeout=300, cwd=out,
    )  # fmt: skip
    return next(out.glob("pytest_vcluster-*.whl"))


@pytest.mark.parametrize("minor", ["3.10", "3.13"])
def test_the_example_suite_runs_on_python(minor: str, wheel: Path, tmp_path: Path) -> None:
    python = _interpreter(minor)
    if python is None:
        pytest.skip(f"no CPython {minor} on this machine")
    # Nothing of this checkout on the path (a PYTHONPATH naming it would make pip skip the
    # wheel as "already satisfied").
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYENV_VERSION")},
        "PYTEST_VCLUSTER_CACHE_DIR": str(default_cache_dir()),
        "PYTEST_VCLUSTER_DOWNLOAD_URL": "off",
    }
    env_dir = tmp_path / "venv"
    subprocess.run([str(python), "-m", "venv", str(env_dir)], env=env, check=True, timeout=120)
    py = str(env_dir / "bin" / "python")
    install = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    suite = subprocess.run(
        [py, "-m", "pytest", str(ROOT / "examples/basics"), str(ROOT / "examples/operator"),
         "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert suite.returncode == 0, suite.stdout[-4000:] + suite.stderr[-2000:]
    probe = "import sys, pytest_vcluster; print(sys.version_info[:2], pytest_vcluster.__file__)"
    version = subprocess.run(
        [py, "-c", probe],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert version.startswith(f"({minor.replace('.', ', ')})"), version
    assert str(env_dir) in version  # the wheel's copy, not this checkout
