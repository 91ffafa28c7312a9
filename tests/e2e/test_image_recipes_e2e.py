"""The image recipes' paths for a machine with internet and no debootstrap or Go: the syncer
image built with ``docker build`` FROM a CPython 3.11 base, and the control-plane entrypoint
compiled inside a Go image. Here the two public bases (``python:3.11-slim``, ``golang``) are
stand-ins made locally from what this machine has (the syncer's Debian root filesystem with
its python3, and this machine's Go), since nothing is pulled; the recipes run unchanged."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from pytest_vcluster.docker import Docker
from pytest_vcluster.errors import VClusterError
from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.recipes.control_plane import ControlPlaneImage
from pytest_vcluster.recipes.syncer_image import SyncerImage
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import K8sVersion

from .manifests import pod

pytestmark = pytest.mark.e2e


def test_syncer_image_from_a_python_base_runs_a_vcluster(
    python_base: str,
    kind_host: KindHost,
    vcluster_images: dict[str, str],
    app_image: str,
    cache_dir: Path,
    docker: Docker,
) -> None:
    image = SyncerImage(cache_dir, docker=docker, base=python_base, progress=print)
    tag, _ = image.build(force=True)
    assert tag != vcluster_images["syncer"]  # another recipe, another tag
    history = docker.out(["history", "--no-trunc", "--format", "{{.CreatedBy}}", tag])
    # BuildKit says "COPY opt/syncer /opt/syncer", the classic builder "COPY dir:<hash> in ...".
    assert any("COPY" in line and "/opt/syncer" in line for line in history.splitlines())
    config = json.loads(docker.out(["image", "inspect", "--format", "{{json .Config}}", tag]))
    assert config["User"] == "65532"
    assert config["Entrypoint"] == ["python3", "-m", "syncer"]
    kind_host.load_images([app_image])
    images = {"controlPlane": vcluster_images["controlPlane"], "syncer": tag}
    try:
        with VCluster(kind_host.info(), "e2e-dockerfile", images=images, timeout=180) as vc:
            vc.apply(pod("p", app_image))
            vc.wait_for("Pod", "p", "Ready", timeout=120)
    finally:
        docker.run(["rmi", "-f", tag], check=False)


def test_control_plane_entrypoint_built_in_a_go_image_is_the_same_binary(
    go_base: str,
    k8s: K8sVersion,
    cache_dir: Path,
    docker: Docker,
    tmp_path: Path,
) -> None:
    recipe = ControlPlaneImage(k8s, cache_dir, docker=docker, progress=print)
    here = recipe.entrypoint()  # this machine's Go (cached)
    out = tmp_path / "entrypoint"
    recipe._build_in_docker(out, go_base)
    # The same Go, sources and flags (-trimpath): a reproducible build, bit for bit.
    assert hashlib.sha256(out.read_bytes()).hexdigest() == (
        hashlib.sha256(here.read_bytes()).hexdigest()
    )


def test_a_go_image_docker_cannot_get_is_one_clear_error(
    k8s: K8sVersion, cache_dir: Path, docker: Docker, tmp_path: Path
) -> None:
    with socket.socket() as s:  # a registry on loopback that does not answer: Docker's pull
        s.bind(("127.0.0.1", 0))  # of the missing image fails here, nothing leaves the machine
        missing = f"127.0.0.1:{s.getsockname()[1]}/golang:0"
    recipe = ControlPlaneImage(k8s, cache_dir, docker=docker)
    with pytest.raises(VClusterError, match="PYTEST_VCLUSTER_GO_IMAGE") as exc:
        recipe._build_in_docker(tmp_path / "entrypoint", missing)
    assert f"building the control-plane entrypoint in {missing} failed" in str(exc.value)
