"""The kind side of bench/soak.py: vclusters are Helm releases in a kind host of the bench's
own (pods run real containers: the busybox the offline node image preloads)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from incluster import pod_memory
from kindsetup import KindSetup
from kubernetes import client
from soak import descendants, listening_ports, runner_counters, use

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import K8sVersion

CLUSTER = "pytest-vcluster-bench-soak"
PREFIX = "vcluster-soak-"  # host namespaces of the soak's vclusters


class KindTarget:
    name = "kind"
    leak_keys = (
        "vcluster_namespaces",
        "vcluster_namespaces_terminating",
        "host_pods",
        "helm_releases",
        "persistent_volumes",
        "docker_containers",
        "listening_ports",
    )
    rss_keys = ("rss_mib_pytest_like", "ws_mib_etcd", "ws_mib_kube_apiserver", "node_memory_mib")

    def __init__(self, setup: KindSetup, host: KindHost) -> None:
        self.setup, self.host = setup, host
        self.info = host.info()
        self.core = client.CoreV1Api(host.api_client())

    @classmethod
    @contextmanager
    def started(cls, k8s: K8sVersion) -> Iterator[KindTarget]:
        setup = KindSetup.prepare(k8s, default_cache_dir())
        host = setup.host(CLUSTER)
        existed = host.exists()
        host.start()
        try:
            yield cls(setup, host)
        finally:
            if not existed:
                host.delete()

    def counters(self) -> dict[str, Any]:
        namespaces = [
            n for n in self.core.list_namespace().items if n.metadata.name.startswith(PREFIX)
        ]
        active = [n for n in namespaces if n.status.phase != "Terminating"]
        pods = [
            p
            for p in self.core.list_pod_for_all_namespaces().items
            if p.metadata.namespace.startswith(PREFIX)
        ]
        releases = self.core.list_secret_for_all_namespaces(
            field_selector="type=helm.sh/release.v1"
        ).items
        system = pod_memory(self.host, "kube-system")

        def working_set(prefix: str) -> float:
            return float(
                sum(v["working_set_mib"] for k, v in system.items() if k.startswith(prefix))
            )

        metrics = self.host.kubectl_run("get", "--raw", "/metrics").stdout
        storage = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("apiserver_storage_size_bytes")
        )
        me = os.getpid()
        return {
            "vcluster_namespaces": len(active),
            "vcluster_namespaces_terminating": len(namespaces) - len(active),
            "host_pods": len(pods),
            "helm_releases": sum(r.metadata.namespace.startswith(PREFIX) for r in releases),
            "persistent_volumes": len(self.core.list_persistent_volume().items),
            "docker_containers": len(self.setup.docker.out(["ps", "-aq"]).split()),
            "listening_ports": listening_ports([me, *descendants(me)]),
            **runner_counters(),
            "etcd_db_mib": round(storage / 2**20, 1),
            "ws_mib_etcd": working_set("etcd-"),
            "ws_mib_kube_apiserver": working_set("kube-apiserver-"),
            "node_memory_mib": round(sum(self.host.memory().values()) / 2**20),
        }

    def cycle(self, i: int) -> float:
        t0 = time.monotonic()
        with VCluster(self.info, f"soak-{i}", images=self.setup.images, timeout=240) as vc:
            use(
                vc,
                {
                    "image": self.setup.busybox_image,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                },
            )
        return time.monotonic() - t0
