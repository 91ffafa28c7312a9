"""The whole chain for a user with Docker and internet but no Go and no debootstrap, on the kind
host: an empty cache, ``PATH`` without ``go`` and ``debootstrap``, the download sites served on
127.0.0.1 with this machine's real binaries (``download_mirror``), and the two public base
images as local stand-ins (conftest). The README's set-up, ``doctor``, then the CI script
(``examples/ci/run-suite.sh``) runs the example suite on a kind cluster it creates — building
both vcluster images on first use the way that user's machine does (the control-plane
entrypoint compiled inside the Go image, the syncer image by ``docker build`` FROM the Python
image). The kind node image is the one on this machine (a user's kind pulls kindest/node)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from download_mirror import path_without, serve_mirror

from pytest_vcluster.binaries import TOOLS
from pytest_vcluster.docker import Docker
from pytest_vcluster.recipes.control_plane import GO_IMAGE_ENV, ControlPlaneImage
from pytest_vcluster.recipes.syncer_image import BASE_IMAGE_ENV, SyncerImage
from pytest_vcluster.versions import K8sVersion

from .conftest import ROOT

pytestmark = pytest.mark.e2e


@contextmanager
def _absent_from_docker(docker: Docker, tags: list[str]) -> Iterator[None]:
    """Docker without ``tags`` for the block (the user has built nothing yet): each one kept
    under another name and put back afterwards; what the block built anew is removed."""
    kept = {}
    for tag in tags:
        if docker.image_exists(tag):
            kept[tag] = "pytest-vcluster-test/kept:" + hashlib.sha256(tag.encode()).hexdigest()[:16]
            docker.run(["tag", tag, kept[tag]])
            docker.run(["rmi", tag])
    try:
        yield
    finally:
        for tag in tags:
            if tag in kept:
                if not docker.image_exists(tag):
                    docker.run(["tag", kept[tag], tag])
                docker.run(["rmi", kept[tag]], check=False)
            else:
                docker.run(["rmi", "-f", tag], check=False)


def test_a_user_without_go_runs_the_examples_on_kind(
    k8s: K8sVersion,
    cache_dir: Path,
    docker: Docker,
    node_image: str,
    tools: dict[str, Path],
    python_base: str,
    go_base: str,
    tmp_path: Path,
) -> None:
    user_cache = tmp_path / "cache"
    # The tags the user's run will compute (same recipes, same binary bytes): not in Docker.
    cp = ControlPlaneImage(k8s, cache_dir, docker=docker)
    cp_tag = cp.tag(cp.binaries())
    syncer_tag = SyncerImage(cache_dir, docker=docker, base=python_base).tag()
    busybox = sorted((cache_dir / "kind-node").glob("rootfs-*/bin/busybox"))[-1]
    digest = hashlib.sha256(busybox.read_bytes()).hexdigest()
    example_image = f"pytest-vcluster/busybox:{digest[:12]}"
    cluster = f"nogo-{uuid.uuid4().hex[:6]}"
    with serve_mirror(TOOLS, k8s, tmp_path / "mirror") as url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_VCLUSTER_")},
            "PATH": path_without(
                "go", "gofmt", "debootstrap", bin_dir=tmp_path / "bin", path=os.environ["PATH"]
            ),
            "PYTEST_VCLUSTER_DOWNLOAD_URL": url,
            "PYTEST_VCLUSTER_CACHE_DIR": str(user_cache),
            # The user's registry would serve python:3.11-slim and golang:1.24; here, stand-ins.
            BASE_IMAGE_ENV: python_base,
            GO_IMAGE_ENV: go_base,
            "PYTEST_VCLUSTER_EXAMPLE_IMAGE": example_image,  # preloaded in the node image
            "ARTIFACTS": str(tmp_path / "artifacts"),
        }

        def run(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                list(args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
            )

        assert subprocess.run(["which", "go"], env=env, capture_output=True).returncode == 1
        try:
            with _absent_from_docker(docker, [cp_tag, syncer_tag]):
                setup = run("pytest-vcluster", "binaries", "--build", timeout=600)
                assert setup.returncode == 0, setup.stdout + setup.stderr
                assert setup.stdout.count(" download ") == len(TOOLS), setup.stdout
                doctor = run("pytest-vcluster", "doctor", timeout=300)
                assert "WARN  go" in doctor.stdout, doctor.stdout
                assert go_base in doctor.stdout, doctor.stdout  # how the images would be built
                assert python_base in doctor.stdout, doctor.stdout
                suite = run(
                    "bash", "examples/ci/run-suite.sh", "examples", "-v", "-p", "no:cacheprovider",
                    f"--vcluster-kind-cluster={cluster}",
                    timeout=1800,
                )  # fmt: skip
                out = suite.stdout + suite.stderr
                assert suite.returncode == 0, out[-6000:]
                # Real containers answered: the DNS example runs only on kind (skipped locally).
                assert "test_service_is_reached_by_its_dns_name PASSED" in suite.stdout
                # Both images were built on first use, the user's way, with the user's cache.
                assert docker.image_exists(cp_tag)
                assert docker.image_exists(syncer_tag)
                entrypoints = list((user_cache / "images/control-plane").glob("entrypoint-*/*"))
                assert [p.name for p in entrypoints] == ["entrypoint"], entrypoints
                history = docker.out(["history", "--format", "{{.CreatedBy}}", syncer_tag])
                assert "/opt/syncer" in history
        finally:
            if (
                cluster
                in subprocess.run(
                    [str(tools["kind"]), "get", "clusters"], capture_output=True, text=True
                ).stdout.split()
            ):
                subprocess.run([str(tools["kind"]), "delete", "cluster", "--name", cluster])
                pytest.fail(f"the run left its kind cluster {cluster} behind")
