"""Which control-plane and syncer images in-cluster vclusters run (pytest_vcluster.images): the
named ones win and nothing is built; this checkout carries the recipes. Building and finding by
recipe hash run for real in the kind suites (tests/e2e, the examples on kind)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vcluster import images


def test_named_images_are_used_without_docker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYTEST_VCLUSTER_CONTROL_PLANE_IMAGE", "registry.example/cp:1")
    monkeypatch.setenv("PYTEST_VCLUSTER_SYNCER_IMAGE", "registry.example/syncer:1")
    said: list[str] = []
    found = images.ensure("1.37", tmp_path, said.append, docker=object())
    assert found == {"controlPlane": "registry.example/cp:1", "syncer": "registry.example/syncer:1"}
    assert said == []  # nothing looked for, nothing built


def test_this_checkout_has_the_recipes() -> None:
    root = images.recipes_dir()
    assert root is not None
    assert (root / "control-plane" / "build.py").is_file()
