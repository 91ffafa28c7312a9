"""What every kind benchmark starts from: Docker, the offline node image, the control-plane and
syncer images and the kind/kubectl binaries, built or found in the cache."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from pytest_vcluster import images as recipes
from pytest_vcluster.binaries import BinaryResolver
from pytest_vcluster.docker import Docker, ensure_docker
from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.scripts import load_script
from pytest_vcluster.versions import K8sVersion

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class KindSetup:
    k8s: K8sVersion
    cache: Path
    docker: Docker
    node_image: str
    images: dict[str, str]  # chart keys: controlPlane, syncer
    kind: Path
    kubectl: Path

    @classmethod
    def prepare(cls, k8s: K8sVersion, cache: Path) -> KindSetup:
        docker = ensure_docker(start=True, cache_dir=cache, progress=log)
        node = load_script(ROOT / "images/kind-node/build.py", "pytest_vcluster_kind_node_build")
        node_image = str(node.NodeImageBuilder(k8s, cache, docker=docker, progress=log).build().tag)
        images = recipes.build(str(k8s), cache, log, docker=docker)
        resolver = BinaryResolver(k8s, cache, download_base="off")
        return cls(
            k8s,
            cache,
            docker,
            node_image,
            images,
            resolver.resolve("kind").path,
            resolver.resolve("kubectl").path,
        )

    @property
    def busybox_image(self) -> str:
        """The busybox the node image preloads (its tag is the binary's hash): pods run it
        with ``imagePullPolicy: Never``, nothing is pulled."""
        busybox = sorted((self.cache / "kind-node").glob("rootfs-*/bin/busybox"))[-1]
        return "pytest-vcluster/busybox:" + hashlib.sha256(busybox.read_bytes()).hexdigest()[:12]

    def host(self, name: str) -> KindHost:
        return KindHost(
            self.k8s, self.kind, self.kubectl, self.cache, name=name, image=self.node_image,
            timeout=600,
        )  # fmt: skip
