"""The kind host's pure parts: its cluster config, the kind command lines, which node image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..docker import Docker
from ..versions import K8sVersion

DEFAULT_CLUSTER = "pytest-vcluster"
LOCAL_IMAGE_REPO = "pytest-vcluster/kind-node"
PUBLIC_IMAGE_REPO = "kindest/node"
BUILD_HINT = "python images/kind-node/build.py --k8s-version {version}"


def cluster_config(
    *,
    workers: int = 0,
    cgroup_v1: bool = False,
    api_port: int = 0,
    extra_patches: Sequence[str] = (),
) -> dict[str, Any]:
    """The kind ``Cluster`` config: API on 127.0.0.1, kubelet patched for cgroup v1 hosts."""
    patches = list(extra_patches)
    if cgroup_v1:
        patches.append(
            "kind: KubeletConfiguration\n"
            "apiVersion: kubelet.config.k8s.io/v1beta1\n"
            "failCgroupV1: false\n"
        )
    cfg: dict[str, Any] = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "networking": {"apiServerAddress": "127.0.0.1", "apiServerPort": api_port},
        "nodes": [{"role": "control-plane"}] + [{"role": "worker"} for _ in range(workers)],
    }
    if patches:
        cfg["kubeadmConfigPatches"] = patches
    return cfg


def create_args(
    kind: Path | str, name: str, image: str, config: Path, kubeconfig: Path
) -> list[str]:
    """``kind create cluster`` for ``name`` writing only ``kubeconfig`` (never ~/.kube/config)."""
    return [
        str(kind),
        "create",
        "cluster",
        "--name",
        name,
        "--image",
        image,
        "--config",
        str(config),
        "--kubeconfig",
        str(kubeconfig),
        "--wait",
        "0s",
        "--retain=false",
    ]


def delete_args(kind: Path | str, name: str, kubeconfig: Path) -> list[str]:
    return [str(kind), "delete", "cluster", "--name", name, "--kubeconfig", str(kubeconfig)]


def load_args(kind: Path | str, name: str, images: Sequence[str]) -> list[str]:
    return [str(kind), "load", "docker-image", "--name", name, *images]


def version_matches(found: str, want: K8sVersion) -> bool:
    """``found`` (``v1.37.2`` from /kind/version) against the request (patch only if exact)."""
    core = found.strip().lstrip("v").split("+")[0].split("-")[0]
    parts = core.split(".")
    if len(parts) < 2:
        return False
    if want.exact:
        return core == str(want)
    return parts[:2] == [str(want.major), str(want.minor)]


def default_image(k8s: K8sVersion, docker: Docker | None = None) -> str:
    """The newest local ``pytest-vcluster/kind-node:<tag>-*`` image, else ``kindest/node``."""
    if docker is not None:
        out = docker.run(
            [
                "images",
                "--format",
                "{{.Repository}}:{{.Tag}}\t{{.CreatedAt}}",
                LOCAL_IMAGE_REPO,
            ],
            check=False,
        ).stdout.decode()
        rows = [ln.split("\t") for ln in out.splitlines() if "\t" in ln]
        mine = [r for r in rows if r[0].split(":", 1)[1].startswith(k8s.tag + "-")]
        if mine:
            return max(mine, key=lambda r: r[1])[0]
    return f"{PUBLIC_IMAGE_REPO}:{k8s.tag}"


def node_condition(node: dict[str, Any], kind: str = "Ready") -> tuple[bool, str]:
    for cond in node.get("status", {}).get("conditions", []):
        if cond.get("type") == kind:
            ok = cond.get("status") == "True"
            return ok, f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")
    return False, "no Ready condition yet"
