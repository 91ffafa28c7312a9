"""The image recipes travel in the wheel: an install that is not a checkout (no ``images/``, no
``pyproject.toml``) computes the same image tags as this checkout, so the kind host builds (or
finds) the same images for a user who ran ``pip install pytest-vcluster``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, pytest_vcluster
from pytest_vcluster.recipes import control_plane, syncer_image
print(json.dumps({
    "package": pytest_vcluster.__file__,
    "syncer": syncer_image.SyncerImage(base="python:3.11-slim").tag(),
    "syncer_debootstrap": syncer_image.SyncerImage(base=None).tag(),
    "control_plane_recipe": control_plane.recipe_hash(),
    "entrypoint": sorted(p.name for p in control_plane.ENTRYPOINT_SRC.iterdir()),
}))
"""


def _probe(python: str, cwd: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what is installed
    out = subprocess.run(
        [python, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_an_installed_wheel_has_the_recipes_and_the_same_tags(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(ROOT)],
        check=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    env_dir = tmp_path / "venv"
    # The dependencies (kubernetes, ...) from this interpreter; the project only from the wheel.
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = str(env_dir / "bin" / "python")
    wheel = next(wheels.glob("pytest_vcluster-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
         "--force-reinstall", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    away = tmp_path / "elsewhere"
    away.mkdir()
    installed = _probe(python, away)
    here = _probe(sys.executable, ROOT)
    assert str(installed["package"]).startswith(str(env_dir))  # not this checkout
    assert installed["entrypoint"] == ["go.mod", "main.go"]
    for key in ("syncer", "syncer_debootstrap", "control_plane_recipe"):
        assert installed[key] == here[key], key
