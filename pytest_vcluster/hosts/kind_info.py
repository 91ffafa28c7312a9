"""The kind host as its vclusters see it (Helm releases of ``chart/``), and how a run opens it.

It owns what only kind has: loading locally built images into its nodes (``kind load``, once
per process and cluster, skipped for images every node has already) and reading a pod's
memory with ``crictl`` inside a node.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..docker import containerd_ref
from ..errors import InClusterError
from ..spec import VClusterSpec
from ..versions import parse_k8s_version
from .base import HostContext, Progress, Provides, RuntimeOptions

if TYPE_CHECKING:
    from ..kept import KeptRecord
    from ..settings import Settings
    from .incluster import InClusterVCluster
    from .tools import Tools

PROVIDES = Provides(
    tools=("kind", "kubectl", "helm"),
    chart_values=True,
    # A release costs the node's CPU as much as the test's: a pool only when asked for (it
    # starts under a CPU limit, lifted when a test takes it).
    default_prewarm=0,
    deferred_namespace_wait=True,  # the namespace controller removes a namespace after 5 s
)

_loaded: set[tuple[str, str]] = set()  # (kind cluster, image) loaded by this process
_load_lock = threading.Lock()


@dataclass(frozen=True)
class KindHostInfo:
    cluster: str
    k8s_version: str
    server: str
    kubeconfig: str
    cache_dir: str
    binaries: dict[str, str] = field(default_factory=dict)  # kind, kubectl

    @property
    def kind(self) -> str:
        return "kind"

    @property
    def provides(self) -> Provides:
        return PROVIDES

    @property
    def workdir(self) -> Path:
        return Path(self.cache_dir) / "kind" / self.cluster

    def tools(self) -> Tools:
        from .tools import Tools

        paths = {k: Path(v) for k, v in self.binaries.items()}
        return Tools(paths, parse_k8s_version(self.k8s_version), Path(self.cache_dir))

    def new_vcluster(self, spec: VClusterSpec, options: RuntimeOptions) -> InClusterVCluster:
        from .incluster import new_release

        return new_release(self, spec, options)

    def needed_after_run(self, kept: list[KeptRecord]) -> bool:
        return any(r.host_kubeconfig == self.kubeconfig for r in kept)

    # -- what only kind has -------------------------------------------------------------------
    def images(self, k8s_version: str, progress: Progress) -> dict[str, str]:
        """Built here when Docker lacks them (by recipe hash), then ``kind load``-ed."""
        from .. import images

        return images.ensure(k8s_version, Path(self.cache_dir), progress)

    def load_images(self, images: list[str], progress: Progress) -> float:
        with _load_lock:
            todo = [i for i in images if (self.cluster, i) not in _loaded]
            if not todo:
                return 0.0
            present = self._images_in_nodes()
            _loaded.update((self.cluster, i) for i in todo if containerd_ref(i) in present)
            todo = [i for i in todo if (self.cluster, i) not in _loaded]
            if not todo:
                return 0.0
            t0 = time.monotonic()
            progress(f"pytest-vcluster: kind load docker-image {' '.join(todo)}")
            argv = [str(self.tools().path("kind")), "load", "docker-image", "--name", self.cluster]
            proc = subprocess.run(
                [*argv, *todo], capture_output=True, text=True, timeout=600, check=False
            )
            if proc.returncode != 0:
                raise InClusterError(
                    f"kind load docker-image {' '.join(todo)} failed: "
                    f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
                )
            _loaded.update((self.cluster, i) for i in todo)
            return time.monotonic() - t0

    def _nodes(self, role: str = "") -> list[str]:
        from ..docker import find_cli

        argv = ["ps", "--filter", f"label=io.x-k8s.kind.cluster={self.cluster}", "-q"]
        if role:
            argv[3:3] = ["--filter", f"label=io.x-k8s.kind.role={role}"]
        out = find_cli().run(argv, check=False)
        return [n.decode() for n in out.stdout.split()]

    def node_address(self) -> str:
        """The control-plane node container's address on its Docker network (routable from
        this machine where Docker runs here, on Linux; whether it is, the caller tries)."""
        from ..docker import find_cli

        nodes = self._nodes("control-plane")
        if not nodes:
            return ""
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        out = find_cli().run(["inspect", "-f", fmt, nodes[0]], check=False)
        addresses = out.stdout.decode().split() if out.returncode == 0 else []
        return addresses[0] if addresses else ""

    def _images_in_nodes(self) -> set[str]:
        """Images every node of the kind cluster has already (a reused cluster, a preloaded
        node image): those need no ``kind load`` (~30 s for both images)."""
        from ..docker import find_cli

        common: set[str] | None = None
        for node in self._nodes():
            argv = ["exec", node, "ctr", "-n", "k8s.io", "images", "ls", "-q"]
            out = find_cli().run(argv, check=False)
            refs = set(out.stdout.decode().split()) if out.returncode == 0 else set()
            common = refs if common is None else common & refs
        return common or set()

    def container_rss(self, namespace: str, pod: str) -> dict[str, int]:
        """RSS of the pod's containers (working set where the runtime reports no RSS), read
        with ``crictl stats`` in the nodes."""
        from ..docker import find_cli

        result: dict[str, int] = {}
        for node in self._nodes():
            out = find_cli().run(
                [
                    "exec", node, "crictl", "stats", "-o", "json",
                    "--label", f"io.kubernetes.pod.namespace={namespace}",
                    "--label", f"io.kubernetes.pod.name={pod}",
                ],
                check=False,
            )  # fmt: skip
            with contextlib.suppress(ValueError, KeyError):  # not on this node, or no stats yet
                for st in json.loads(out.stdout.decode()).get("stats") or []:
                    name = st["attributes"]["labels"]["io.kubernetes.container.name"]
                    mem = st.get("memory") or {}
                    value = (mem.get("rssBytes") or mem.get("workingSetBytes") or {}).get("value")
                    result[name] = int(value or 0)
        return result


class KindHostType:
    name = "kind"
    provides = PROVIDES
    unusable = "did not start"
    options: tuple[str, ...] = ()

    def check_settings(self, settings: Settings) -> None:
        pass  # Docker and the node image are checked when the host starts (clear errors)

    def describe(self, settings: Settings) -> str:
        return self.name

    @contextmanager
    def open(self, ctx: HostContext) -> Iterator[KindHostInfo]:
        """Create or reuse the kind cluster; the last user deletes it if this run made it
        (unless reused, or kept vclusters live on it)."""
        from .. import kept
        from ..binaries import BinaryResolver
        from .kind import KindHost

        s = ctx.settings
        r = BinaryResolver(s.k8s, s.cache_dir, progress=ctx.progress)
        host = KindHost(
            s.k8s,
            r.resolve("kind").path,
            r.resolve("kubectl").path,
            s.cache_dir,
            name=s.kind_cluster,
            image=s.kind_image,
            workers=s.kind_workers,
            reuse=s.reuse_host,
            start_docker=True,
            timeout=max(s.timeout, 300),
            progress=ctx.progress,
        )
        host.start()
        info = host.info()
        try:
            yield info
        finally:
            if info.needed_after_run([r for _, r in kept.load_all(s.cache_dir)]):
                host.reuse = True
            host.stop()


HOST_TYPE = KindHostType()
