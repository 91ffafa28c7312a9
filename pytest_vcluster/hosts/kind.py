"""The kind host: a named kind cluster, created or reused, reachable on 127.0.0.1.

(Over 400 lines for one job, the cluster's lifecycle: create or reuse under a file lock,
leases of the processes sharing it, readiness, deletion by the last user. Its pure parts are
in ``kind_config.py``, what its vclusters see in ``kind_info.py``.)

The kubeconfig lives in the cache directory (``<cache>/kind/<cluster>.kubeconfig``); the user's
``~/.kube/config`` is only written when ``export_kubeconfig=True``. Several processes (xdist
workers, parallel runs) may share one cluster: creation happens under a file lock, each user
holds a lease file, and the last user out deletes the cluster when this run created it and
``reuse`` is off. A reused cluster must run the requested Kubernetes version.

The node image is any kind node image: the public ``kindest/node:<version>`` where there is
internet, or the one ``images/kind-node/build.py`` builds offline. On cgroup v1 hosts kubelet
1.35+ refuses to start unless ``failCgroupV1: false``, so the cluster config carries that patch
there (and only there).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml
from filelock import FileLock

from ..docker import Docker, DockerCommandError, ensure_docker, is_cgroup_v1
from ..errors import HostStartError
from ..procs import pid_alive, proc_starttime
from ..versions import K8sVersion
from ..wait import NotYet, done_or_not_yet, poll
from .kind_config import (
    BUILD_HINT,
    DEFAULT_CLUSTER,
    LOCAL_IMAGE_REPO,
    cluster_config,
    create_args,
    default_image,
    delete_args,
    load_args,
    node_condition,
    version_matches,
)
from .pods import pod_problem, pod_ready

if TYPE_CHECKING:
    from .kind_info import KindHostInfo

__all__ = [  # the pure helpers live in kind_config and pods; imported from here too
    "KindHost",
    "cluster_config",
    "create_args",
    "default_image",
    "delete_args",
    "load_args",
    "node_condition",
    "pod_problem",
    "version_matches",
]

Progress = Callable[[str], None]


#: Seconds after the nodes turned Ready during which a system pod's Unschedulable condition is
#: taken for one set while they were not (the scheduler retries it then).
UNSCHEDULABLE_GRACE = 30.0


class KindError(HostStartError):
    """The kind host could not be created, reused or deleted."""


class KindImageMissingError(KindError):
    """The node image is neither in Docker nor pullable."""


class KindVersionMismatchError(KindError):
    """A cluster of that name exists but runs another Kubernetes version."""


class KubectlError(KindError):
    """A kubectl command against the kind cluster failed (it may still be starting)."""


def _quiet(msg: str) -> None:
    pass


@dataclass
class KindHost:
    """A kind cluster as the host of vclusters; a context manager or ``start()``/``stop()``."""

    k8s: K8sVersion
    kind: Path
    kubectl: Path
    cache_dir: Path
    name: str = DEFAULT_CLUSTER
    image: str | None = None
    workers: int = 0
    reuse: bool = False
    export_kubeconfig: bool = False
    start_docker: bool = False
    timeout: float = 300.0
    progress: Progress = _quiet
    created: bool = field(default=False, init=False)
    ready_seconds: float = field(default=0.0, init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)
    _nodes_ready_at: float = field(default=0.0, init=False, repr=False)
    _docker: Docker | None = field(default=None, init=False, repr=False)
    _lease: Path | None = field(default=None, init=False, repr=False)

    # -- paths ----------------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.cache_dir / "kind"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / f"{self.name}.kubeconfig"

    @property
    def _lock(self) -> FileLock:
        return FileLock(str(self.state_dir / f"{self.name}.lock"))

    @property
    def _leases(self) -> Path:
        return self.state_dir / f"{self.name}.users"

    @property
    def _config_path(self) -> Path:
        return self.state_dir / f"{self.name}.kind.yaml"

    @property
    def _created_marker(self) -> Path:
        return self.state_dir / f"{self.name}.created"

    @property
    def control_plane_container(self) -> str:
        return f"{self.name}-control-plane"

    @property
    def docker(self) -> Docker:
        if self._docker is None:
            self._docker = ensure_docker(
                start=self.start_docker, cache_dir=self.cache_dir, progress=self.progress
            )
        return self._docker

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> KindHost:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _ = self.docker  # clear errors first: Docker missing / not running
        with self._lock:
            if self.exists():
                self._check_version()
                self.progress(f"pytest-vcluster: reusing kind cluster {self.name!r}")
                self._write_kubeconfig()
            else:
                self._create()
            self._take_lease()
        try:
            self.wait_ready(t0 + self.timeout)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - t0
        if self.export_kubeconfig:
            self._kind(["export", "kubeconfig", "--name", self.name])

    def stop(self) -> None:
        """Give up this process's lease; the last user deletes what this run created."""
        if self._lease is None:
            return
        with self._lock:
            self._lease.unlink(missing_ok=True)
            self._lease = None
            if self.reuse or self._live_leases() or not self._created_marker.exists():
                return
            self.delete()

    def delete(self) -> None:
        """Delete the cluster (whoever created it) and forget its kubeconfig."""
        t0 = time.monotonic()
        self.progress(f"pytest-vcluster: deleting kind cluster {self.name!r}")
        self._kind(delete_args(self.kind, self.name, self.kubeconfig_path)[1:], timeout=180)
        self._created_marker.unlink(missing_ok=True)
        self.kubeconfig_path.unlink(missing_ok=True)
        self._config_path.unlink(missing_ok=True)
        if self._lease is not None:
            self._lease.unlink(missing_ok=True)
            self._lease = None
        with contextlib.suppress(OSError):
            self._leases.rmdir()  # only when no lease is left
        self.timings["delete"] = time.monotonic() - t0

    # -- queries --------------------------------------------------------------------------------
    def clusters(self) -> list[str]:
        out = self._kind(["get", "clusters"]).stdout
        return [ln.strip() for ln in out.splitlines() if ln.strip()]

    def exists(self) -> bool:
        return self.name in self.clusters()

    def node_version(self) -> str:
        try:
            return self.docker.out(["exec", self.control_plane_container, "cat", "/kind/version"])
        except DockerCommandError as exc:
            raise KindError(
                f"kind cluster {self.name!r} exists but its control-plane node "
                f"{self.control_plane_container!r} is not running ({exc}); delete it with "
                f"`kind delete cluster --name {self.name}`"
            ) from exc

    def load_images(self, images: Sequence[str]) -> None:
        """``kind load docker-image`` of locally built images into every node."""
        if images:
            t0 = time.monotonic()
            self._kind(load_args(self.kind, self.name, images)[1:], timeout=600)
            self.timings["load"] = time.monotonic() - t0

    def kubectl_json(self, *args: str) -> Any:
        out = self.kubectl_run(*args, "-o", "json").stdout
        return json.loads(out)

    def kubectl_run(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.kubectl), "--kubeconfig", str(self.kubeconfig_path), *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
        return proc

    def server(self) -> str:
        """The API server URL from the kubeconfig (``https://127.0.0.1:<port>``)."""
        cfg = yaml.safe_load(self.kubeconfig_path.read_text())
        return str(cfg["clusters"][0]["cluster"]["server"])

    def info(self) -> KindHostInfo:
        """The host as its vclusters see it (plain data: no etcd, no host PKI)."""
        from .kind_info import KindHostInfo

        return KindHostInfo(
            cluster=self.name,
            k8s_version=str(self.k8s),
            server=self.server(),
            kubeconfig=str(self.kubeconfig_path),
            cache_dir=str(self.cache_dir),
            binaries={"kind": str(self.kind), "kubectl": str(self.kubectl)},
        )

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for the host, as cluster-admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig_path))  # type: ignore[no-untyped-call]

    def memory(self) -> dict[str, int]:
        """Memory use of each node container, in bytes (from ``docker stats``)."""
        out = self.docker.out(
            ["ps", "--filter", f"label=io.x-k8s.kind.cluster={self.name}", "--format", "{{.Names}}"]
        )
        names = out.split()
        if not names:
            return {}
        stats = self.docker.out(
            ["stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}", *names]
        )
        result = {}
        for line in stats.splitlines():
            n, _, usage = line.partition("\t")
            result[n] = _parse_size(usage.split("/")[0].strip())
        return result

    # -- readiness ------------------------------------------------------------------------------
    def wait_ready(self, deadline: float) -> None:
        """API answers → every node Ready → CoreDNS Running → ``default`` ServiceAccount."""
        start = time.monotonic()
        retry = (KubectlError, subprocess.TimeoutExpired)
        what = f"kind cluster {self.name!r}:"
        poll(f"{what} API server /readyz", self._api_ready, deadline, interval=0.5, retry=retry)
        self.timings.setdefault("api_ready", time.monotonic() - start)
        poll(f"{what} nodes Ready", self._nodes_ready, deadline, interval=0.5, retry=retry)
        self._nodes_ready_at = time.monotonic()
        poll(f"{what} cluster DNS", self._dns_ready, deadline, interval=0.5, retry=retry)
        poll(
            f"{what} default ServiceAccount",
            lambda: self.kubectl_run("get", "serviceaccount", "default"),
            deadline,
            interval=0.5,
            retry=retry,
        )

    def _api_ready(self) -> None:
        self.kubectl_run("get", "--raw", "/readyz", timeout=10)

    def _nodes_ready(self) -> bool:
        nodes = self.kubectl_json("get", "nodes")["items"]
        states = [(n["metadata"]["name"], *node_condition(n)) for n in nodes]
        waiting = [f"{n}: {why}" for n, ok, why in states if not ok]
        return done_or_not_yet(bool(nodes) and not waiting, "; ".join(waiting) or "no nodes")

    def _dns_ready(self) -> bool:
        pods = self.kubectl_json("get", "pods", "-n", "kube-system")["items"]
        for pod in pods:
            problem = pod_problem(pod)
            settling = time.monotonic() - self._nodes_ready_at < UNSCHEDULABLE_GRACE
            if problem and ": Unschedulable:" in problem and settling:
                # Marked while the node still had its not-ready taint: the scheduler retries
                # it now that the node is Ready (seen: CoreDNS Unschedulable 0.1 s after).
                raise NotYet(problem)
            if problem:  # not a KubectlError: ends the wait
                raise KindError(f"kind cluster {self.name!r}: a system pod cannot start: {problem}")
        dns = [p for p in pods if p["metadata"].get("labels", {}).get("k8s-app") == "kube-dns"]
        if not dns or not all(pod_ready(p) for p in dns):
            raise NotYet("CoreDNS not ready yet")
        return True

    # -- internals ------------------------------------------------------------------------------
    def _kind(
        self, args: Sequence[str], timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.kind), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()[-3000:]
            raise KindError(f"kind {' '.join(args)} failed ({proc.returncode}): {detail}")
        return proc

    def _check_version(self) -> None:
        found = self.node_version()
        if not version_matches(found, self.k8s):
            raise KindVersionMismatchError(
                f"kind cluster {self.name!r} exists with Kubernetes {found}, but {self.k8s} was "
                f"requested. Delete it (`kind delete cluster --name {self.name}`), pick another "
                "name with --vcluster-kind-cluster, or request its version."
            )

    def _resolve_image(self) -> str:
        image = self.image or default_image(self.k8s, self.docker)
        if image.startswith(LOCAL_IMAGE_REPO + ":") and not self.docker.image_exists(image):
            raise self._image_missing(image, "is not in Docker")
        return image  # other images: kind pulls them when missing

    def _image_missing(self, image: str, why: str) -> KindImageMissingError:
        return KindImageMissingError(
            f"kind node image {image!r} {why}. Build one offline with "
            f"`{BUILD_HINT.format(version=self.k8s.minor_str)}` (it prints the tag to pass), or "
            "use kindest/node where Docker Hub is reachable."
        )

    def _create(self) -> None:
        image = self._resolve_image()
        cfg = cluster_config(workers=self.workers, cgroup_v1=is_cgroup_v1())
        cfg_path = self._config_path
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.progress(f"pytest-vcluster: creating kind cluster {self.name!r} from {image}")
        t0 = time.monotonic()
        self._created_marker.write_text(str(os.getpid()))
        try:
            self._kind(
                create_args(self.kind, self.name, image, cfg_path, self.kubeconfig_path)[1:],
                timeout=max(self.timeout, 300),
            )
        except KindError as exc:
            self._delete_after_failed_create()
            if "pull" in str(exc).lower() and not self.docker.image_exists(image):
                raise self._image_missing(
                    image, "is not in Docker and could not be pulled"
                ) from exc
            raise
        except BaseException:
            self._delete_after_failed_create()
            raise
        self.created = True
        self.timings["create"] = time.monotonic() - t0

    def _delete_after_failed_create(self) -> None:
        """Remove what a failed ``kind create`` left; the create's error is the one to raise."""
        try:
            self.delete()
        except (KindError, OSError, subprocess.TimeoutExpired) as exc:
            self.progress(f"pytest-vcluster: deleting the half-created kind cluster: {exc}")

    def _write_kubeconfig(self) -> None:
        out = self._kind(["get", "kubeconfig", "--name", self.name]).stdout
        tmp = self.kubeconfig_path.with_suffix(".tmp")
        tmp.write_text(out)
        tmp.chmod(0o600)
        os.replace(tmp, self.kubeconfig_path)

    def _take_lease(self) -> None:
        self._leases.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()  # one lease per handle: a process may hold several
        lease = self._leases / f"{pid}-{proc_starttime(pid)}-{uuid.uuid4().hex[:8]}"
        lease.write_text("")
        self._lease = lease

    def _live_leases(self) -> list[Path]:
        live = []
        for lease in self._leases.glob("*-*"):
            pid_s, _, rest = lease.name.partition("-")
            start = rest.split("-", 1)[0]
            if pid_s.isdigit() and pid_alive(int(pid_s), start):
                live.append(lease)
            else:
                lease.unlink(missing_ok=True)  # its owner died without stopping
        return live


def _parse_size(text: str) -> int:
    units = {
        "B": 1,
        "KiB": 1024,
        "MiB": 1024**2,
        "GiB": 1024**3,
        "kB": 1000,
        "MB": 10**6,
        "GB": 10**9,
    }
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            try:
                return int(float(text[: -len(unit)]) * units[unit])
            except ValueError:
                return 0
    return 0
