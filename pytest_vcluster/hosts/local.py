"""The embedded local host: etcd + control plane + kwok fake nodes, no Docker.

Ready means: kube-apiserver ``/readyz`` ok, the ``default`` ServiceAccount exists (the
controller-manager works) and every fake node is Ready (kwok works). Processes are children of
the test runner (see ``procs``), their data lives in one work directory removed on stop; work
directories left by a killed runner are removed by the next start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import HostStartError
from ..procs import ProcessGroup, pid_alive, proc_starttime
from ..versions import K8sVersion
from .controlplane import ControlPlane, Etcd, Progress, _quiet, wait_until
from .local_info import LocalHostInfo

HOST_PREFIX = "/host"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
MANAGED_BY = "pytest-vcluster"


def runtime_root() -> Path:
    """Base directory of work dirs; tmpfs when available so etcd's fsyncs cost nothing."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"pytest-vcluster-{os.getuid()}"


def reap_stale_workdirs(root: Path) -> list[Path]:
    """Remove work dirs whose owner process is gone (a runner killed with SIGKILL)."""
    removed = []
    for d in root.glob("*/"):
        owner = d / "owner"
        try:
            pid_s, start = owner.read_text().split()
            pid = int(pid_s)
        except (OSError, ValueError):
            # No owner file yet: a run is creating it right now, or it is garbage; use age.
            if time.time() - d.stat().st_mtime < 300:
                continue
            pid, start = -1, ""
        if pid < 0 or not pid_alive(pid, start):
            kill_processes_using(d)
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def kill_processes_using(directory: Path) -> list[int]:
    """SIGKILL processes whose command line names ``directory`` (orphans of a dead owner).

    Only our own children put these per-run paths on their command lines; a kept vcluster
    whose runner was killed ends up here once its owner is gone.
    """
    needle = str(directory).rstrip("/") + "/"
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed


def fake_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "app.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
    }


class LocalHost:
    """A Docker-free Kubernetes host; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        k8s: K8sVersion,
        binaries: Mapping[str, Path],
        *,
        nodes: int = 1,
        workdir: Path | None = None,
        progress: Progress = _quiet,
        timeout: float = 60.0,
        cache_dir: Path | None = None,
    ) -> None:
        self.k8s = k8s
        self.cache_dir = cache_dir  # where its vclusters find binaries of other versions
        self.binaries = dict(binaries)
        self.nodes = [f"kwok-node-{i}" for i in range(nodes)]
        self.progress = progress
        self.timeout = timeout
        self._given_workdir = workdir
        self.workdir: Path = workdir or Path()
        self.procs = ProcessGroup()
        self.etcd: Etcd | None = None
        self.control_plane: ControlPlane | None = None
        self.started_at = 0.0
        self.ready_seconds = 0.0

    # -- lifecycle
    def __enter__(self) -> LocalHost:
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
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.started_at = time.monotonic()
        deadline = self.started_at + self.timeout
        self._make_workdir()
        self.etcd = Etcd(self.binaries["etcd"], self.workdir, self.procs, self.workdir / "etcd")
        self.etcd.start()
        cp = ControlPlane(
            name="local-host",
            workdir=self.workdir / "host",
            binaries=self.binaries,
            etcd_url=self.etcd.url,
            etcd_prefix=HOST_PREFIX,
            procs=self.procs,
            progress=self.progress,
        )
        self.control_plane = cp
        cp.write_pki()  # while etcd starts
        self.etcd.wait_ready(deadline)
        cp.start_processes()
        cp.wait_apiserver(deadline)
        # kwok after /readyz: started earlier it sits in a client back-off and sees the node late.
        self.procs.start("kwok", self._kwok_args(), self.workdir / "kwok.log")
        client = cp.rest()
        for name in self.nodes:
            status, body = client.request("POST", "/api/v1/nodes", fake_node(name))
            if status not in (201, 409):
                raise HostStartError(f"creating fake node {name} failed ({status}): {body}")
        cp.wait_default_service_account(deadline)
        self.progress("pytest-vcluster: local host: waiting for fake nodes to be Ready")
        for name in self.nodes:
            path = f"/api/v1/nodes/{name}"
            wait_until(
                f"node {name} Ready (kwok)",
                lambda: _node_ready(client.get(path)),  # noqa: B023 - called before next loop
                deadline,
                tuple(self.procs.children),
            )
        self.ready_seconds = time.monotonic() - self.started_at
        # From now on a crashed etcd, API server, scheduler or kwok is started again, as a
        # kubelet restarts a static pod (state is in etcd's data dir).
        self.procs.supervise()
        self.progress(f"pytest-vcluster: local host ready in {self.ready_seconds:.2f}s")

    def stop(self) -> None:
        self.procs.stop()
        if self._given_workdir is None and self.workdir != Path():
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- details
    def _make_workdir(self) -> None:
        if self._given_workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
        else:
            root = runtime_root()
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            reap_stale_workdirs(root)
            self.workdir = Path(tempfile.mkdtemp(prefix="host-", dir=root))
        pid = os.getpid()
        (self.workdir / "owner").write_text(f"{pid} {proc_starttime(pid)}")
        stages = resources.files("pytest_vcluster") / "data" / "kwok-stages.yaml"
        (self.workdir / "kwok-stages.yaml").write_text(stages.read_text())

    def _kwok_args(self) -> list[str]:
        assert self.control_plane is not None
        return [
            str(self.binaries["kwok"]),
            f"--kubeconfig={self.control_plane.kubeconfig_path}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.0.0.1",
            f"--config={self.workdir / 'kwok-stages.yaml'}",
        ]

    @property
    def kubeconfig_path(self) -> Path:
        assert self.control_plane is not None
        return self.control_plane.kubeconfig_path

    @property
    def server(self) -> str:
        assert self.control_plane is not None
        return self.control_plane.server

    def info(self) -> LocalHostInfo:
        """Everything a vcluster (possibly in another process) needs to use this host."""
        assert self.etcd is not None
        assert self.control_plane is not None
        return LocalHostInfo(
            k8s_version=str(self.k8s),
            server=self.control_plane.server,
            kubeconfig=str(self.kubeconfig_path),
            etcd_url=self.etcd.url,
            pki_dir=str(self.control_plane.workdir),
            workdir=str(self.workdir),
            binaries={k: str(v) for k, v in self.binaries.items()},
            supervisor_pid=os.getpid(),
            cache_dir=str(self.cache_dir or ""),
        )

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for the host, as cluster-admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig_path))  # type: ignore[no-untyped-call]

    def rss(self) -> dict[str, int]:
        return {c.name: c.rss_bytes() for c in self.procs.children}

    def pids(self) -> list[int]:
        return [c.pid for c in self.procs.children]


def _node_ready(resp: tuple[int, Any]) -> bool:
    status, body = resp
    if status != 200 or not isinstance(body, dict):
        return False
    conditions = body.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
