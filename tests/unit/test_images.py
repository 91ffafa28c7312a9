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


@pytest.mark.parametrize(
    ("value", "target"),
    [
        ("127.0.0.1:5000/ci", "127.0.0.1:5000/ci"),
        ("registry.example.com/team/vc/", "registry.example.com/team/vc"),
        ("localhost/x", "localhost/x"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_push_target_accepts_a_registry_and_prefix(value: str, target: str) -> None:
    assert images.push_target(value) == target


@pytest.mark.parametrize("value", ["team/ci", "Registry.example.com/x", "reg.io/UP", "", "a b"])
def test_push_target_refuses_what_docker_would_send_to_docker_hub(value: str) -> None:
    # "team/ci" has no dot or port: Docker would read it as a Docker Hub user.
    with pytest.raises(ValueError, match="REGISTRY\\[:PORT\\]\\[/PREFIX\\]"):
        images.push_target(value)


def test_remote_ref_keeps_the_repository_name_and_the_recipe_tag() -> None:
    assert (
        images.remote_ref("pytest-vcluster/control-plane:1.37-ab12", "127.0.0.1:5000/ci")
        == "127.0.0.1:5000/ci/control-plane:1.37-ab12"
    )


def test_cli_names_the_option_and_the_value_for_a_bad_push_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pytest_vcluster.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["images", "build", "--push", "team/ci"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--push" in err
    assert "'team/ci'" in err
