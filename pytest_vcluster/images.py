"""The control-plane and syncer images of in-cluster vclusters: named by the user, or built on
first use from the recipes in ``pytest_vcluster.recipes`` (a checkout or an installed wheel)
and found again by their recipe hash.

``PYTEST_VCLUSTER_CONTROL_PLANE_IMAGE`` / ``PYTEST_VCLUSTER_SYNCER_IMAGE`` name images of one's
own (a registry's, for a cluster that pulls). Otherwise each recipe tags its image with a hash
of everything that goes into it, so an image of the current sources is found in Docker at once
and a changed source (a syncer edit) builds a new one — never the stale "newest" image.
``pytest-vcluster images build`` does the same ahead of a run; the kind host calls
:func:`ensure` when a vcluster needs them; ``--push REGISTRY/PREFIX`` copies them to a registry
a shared cluster pulls from (:func:`push`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import InClusterError

Progress = Callable[[str], None]
_found: dict[tuple[str, str, str], str] = {}  # (key, version, cache) -> ref, this process
_lock = threading.Lock()
ENV = {
    "controlPlane": "PYTEST_VCLUSTER_CONTROL_PLANE_IMAGE",
    "syncer": "PYTEST_VCLUSTER_SYNCER_IMAGE",
}


def named() -> dict[str, str]:
    """The images the user named (environment), by chart key."""
    return {key: os.environ[env] for key, env in ENV.items() if os.environ.get(env)}


def _builders(k8s_version: str, cache_dir: Path, docker: Any) -> dict[str, Any]:
    from .recipes.control_plane import ControlPlaneImage
    from .recipes.syncer_image import SyncerImage
    from .versions import parse_k8s_version

    k8s = parse_k8s_version(k8s_version)
    return {
        "controlPlane": ControlPlaneImage(k8s, cache_dir, docker=docker),
        "syncer": SyncerImage(cache_dir, docker=docker),
    }


def look(k8s_version: str, cache_dir: Path, docker: Any) -> dict[str, tuple[str, bool]]:
    """Without building: each image's ref and whether Docker has it (named ones: assumed)."""
    out = {key: (ref, True) for key, ref in named().items()}
    missing = [key for key in ENV if key not in out]
    if missing:
        builders = _builders(k8s_version, cache_dir, docker)
        for key in missing:
            tag = builders[key].tag()
            out[key] = (tag, bool(docker.image_exists(tag)))
    return out


def ensure(
    k8s_version: str,
    cache_dir: Path,
    progress: Progress,
    *,
    docker: Any = None,
    force: bool = False,
) -> dict[str, str]:
    """Image refs by chart key: the named ones, else this checkout's, built when Docker lacks
    them (minutes the first time; a lookup by tag after)."""
    out = named()
    with _lock:  # hashing a recipe reads its binaries (~0.5 s): once per process
        for key in ENV:
            if key not in out and (key, k8s_version, str(cache_dir)) in _found and not force:
                out[key] = _found[(key, k8s_version, str(cache_dir))]
        missing = [key for key in ENV if key not in out]
        if missing:
            out |= build(k8s_version, cache_dir, progress, docker=docker, keys=missing, force=force)
    return out


def build(
    k8s_version: str,
    cache_dir: Path,
    progress: Progress,
    *,
    docker: Any = None,
    keys: Sequence[str] = tuple(ENV),
    force: bool = False,
) -> dict[str, str]:
    """The images of this checkout's recipes (names from the environment ignored: what the
    e2e suite and the benchmarks run), built when Docker lacks them."""
    from .docker import ensure_docker

    docker = docker or ensure_docker(start=True, cache_dir=cache_dir, progress=progress)
    builders = _builders(k8s_version, cache_dir, docker)
    out = {}
    for key in keys:
        what = f"{key} image for Kubernetes {k8s_version}" if key == "controlPlane" else key
        progress(f"pytest-vcluster: {what}: looking for it by its recipe hash")
        try:
            tag, built = builders[key].build(force=force)
        except Exception as exc:  # a build script's own errors: one message naming the image
            raise InClusterError(f"building the {what} failed: {exc}") from exc
        progress(f"pytest-vcluster: {what}: {tag} ({'built' if built else 'found in Docker'})")
        out[key] = _found[(key, k8s_version, str(cache_dir))] = tag
    return out


# A registry host (a dot or a port tells it from a Docker Hub user, as Docker reads a ref),
# then lowercase path components: where ``images build --push`` copies the images.
_PUSH_TARGET = re.compile(
    r"^(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+|[a-z0-9.-]+:[0-9]{1,5})(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
)


def push_target(value: str) -> str:
    """``REGISTRY[:PORT][/PREFIX]`` checked, or ValueError saying what is accepted."""
    target = value.rstrip("/")
    if not _PUSH_TARGET.match(target):
        raise ValueError(
            f"{value!r} is not a registry: use REGISTRY[:PORT][/PREFIX] with a registry host "
            "that has a dot or a port (registry.example.com/team, 127.0.0.1:5000/ci), lowercase"
        )
    return target


def remote_ref(local_ref: str, target: str) -> str:
    """``pytest-vcluster/syncer:abc`` pushed to ``target`` is ``target/syncer:abc``: the
    repository's last component and the recipe-hash tag are kept."""
    repo, _, tag = local_ref.rpartition(":")
    return f"{target}/{repo.rsplit('/', 1)[-1]}:{tag}"


def push(refs: dict[str, str], target: str, docker: Any, progress: Progress) -> dict[str, str]:
    """Tag and push each image to ``target``; the pushed refs, pinned by digest, by chart key."""
    from .docker import DockerCommandError

    out = {}
    for key, ref in refs.items():
        remote = remote_ref(ref, target)
        progress(f"pytest-vcluster: pushing {ref} to {remote}")
        try:
            docker.run(["tag", ref, remote])
            docker.run(["push", remote], timeout=1800)
        except DockerCommandError as exc:
            raise InClusterError(f"pushing the {key} image to {target} failed: {exc}") from exc
        digests = docker.out(["image", "inspect", "--format", "{{json .RepoDigests}}", remote])
        repo = remote.rpartition(":")[0]
        pinned = [d for d in json.loads(digests or "[]") if d.startswith(repo + "@")]
        out[key] = pinned[0] if pinned else remote
    return out
