"""``pytest-vcluster images build --push``: both images land in a real registry (the
go-containerregistry registry, built from the Go module proxy, on 127.0.0.1) under the
recipe-hash tag and digest Docker reports; a registry that does not answer is one clear error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import filelock
import pytest

from pytest_vcluster.docker import Docker
from pytest_vcluster.gobuild import GoBuilder, GoRecipe

pytestmark = pytest.mark.e2e

# A registry that listens on loopback only and says where (cmd/registry of the module takes a
# port and binds every interface).
REGISTRY_MAIN = """package main

import (
\t"fmt"
\t"net"
\t"net/http"
\t"os"

\t"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
\tl, err := net.Listen("tcp", "127.0.0.1:0")
\tif err != nil {
\t\tfmt.Fprintln(os.Stderr, err)
\t\tos.Exit(1)
\t}
\tfmt.Println(l.Addr().String())
\tfmt.Fprintln(os.Stderr, http.Serve(l, registry.New()))
}
"""
RECIPE = GoRecipe(
    "registry", "github.com/google/go-containerregistry", "v0.22.1", ".", main_go=REGISTRY_MAIN
)
MANIFESTS = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


@pytest.fixture(scope="module")
def registry(cache_dir: Path) -> Iterator[str]:
    tools = cache_dir / "test-tools"
    tools.mkdir(parents=True, exist_ok=True)
    binary = tools / f"registry-{RECIPE.version}"
    with filelock.FileLock(str(binary) + ".lock"):
        if not binary.exists():
            incoming = tools / f".incoming-{os.getpid()}"
            GoBuilder(cache_dir / "go", print).build(RECIPE, incoming)
            incoming.rename(binary)
    proc = subprocess.Popen([binary], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_vcluster.cli", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def _get(url: str, accept: str = "application/json") -> tuple[bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read(), dict(resp.headers)


def _untag(docker: Docker, prefix: str) -> None:
    """Remove the tags the push made for ``prefix`` (the images stay under their own tags)."""
    refs = docker.out(["images", "--format", "{{.Repository}}:{{.Tag}}"]).split()
    mine = [ref for ref in refs if ref.startswith(prefix + "/")]
    if mine:
        docker.run(["rmi", *mine], check=False)


def test_images_build_push_lands_both_images_in_the_registry(
    registry: str, vcluster_images: dict[str, str], docker: Docker
) -> None:
    try:
        _check_push(registry, vcluster_images, docker)
    finally:
        _untag(docker, registry)


def _check_push(registry: str, vcluster_images: dict[str, str], docker: Docker) -> None:
    out = _cli("images", "build", "--push", f"{registry}/ci/vc")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in out.stdout.splitlines()
        if line.startswith("export ")
    )
    assert set(exports) == {"PYTEST_VCLUSTER_CONTROL_PLANE_IMAGE", "PYTEST_VCLUSTER_SYNCER_IMAGE"}
    for key, env in (("controlPlane", "PYTEST_VCLUSTER_CONTROL_PLANE_IMAGE"),
                     ("syncer", "PYTEST_VCLUSTER_SYNCER_IMAGE")):  # fmt: skip
        local = vcluster_images[key]
        name, tag = local.rsplit("/", 1)[1].split(":")
        repo = f"ci/vc/{name}"
        tags = json.loads(_get(f"http://{registry}/v2/{repo}/tags/list")[0])["tags"]
        assert tag in tags
        _, headers = _get(f"http://{registry}/v2/{repo}/manifests/{tag}", MANIFESTS)
        digest = headers["Docker-Content-Digest"]
        # The printed ref pins the digest the registry serves for the tag.
        assert exports[env] == f"{registry}/{repo}@{digest}"
        # And the registry holds the same image: its config is the local image's ID.
        manifest = json.loads(_get(f"http://{registry}/v2/{repo}/manifests/{tag}", MANIFESTS)[0])
        local_id = docker.out(["image", "inspect", "--format", "{{.Id}}", local])
        assert manifest["config"]["digest"] == local_id


def test_a_registry_that_does_not_answer_is_one_clear_error(
    vcluster_images: dict[str, str], docker: Docker
) -> None:
    with socket.socket() as s:  # a port nobody listens on once this is closed
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    try:
        out = _cli("images", "build", "--push", f"{closed}/ci")
    finally:
        _untag(docker, closed)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("pytest-vcluster: error")]
    assert len(errors) == 1, out.stderr
    assert f"pushing the controlPlane image to {closed}/ci failed" in errors[0]
    assert "Traceback" not in out.stderr
