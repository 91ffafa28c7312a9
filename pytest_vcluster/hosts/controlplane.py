"""etcd and a Kubernetes control plane (apiserver, controller-manager, scheduler) as children.

One etcd serves many control planes: each kube-apiserver stores its objects under its own
``--etcd-prefix``, which isolates them completely (the local host uses ``/host``; local vclusters
use ``/vcluster/<name>``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from syncer.constants import DEFAULT_ISSUER

from .. import kubeconfig, pki
from ..errors import HostStartError
from ..procs import Child, ProcessGroup, free_port
from ..rest import Credentials, RestClient
from ..wait import NotYet, poll

Progress = Callable[[str], None]
POLL = 0.05
ADMIN_USER = "pytest-vcluster-admin"


def _quiet(msg: str) -> None:
    pass


def wait_until(
    what: str,
    check: Callable[[], bool],
    deadline: float,
    children: tuple[Child, ...] | Callable[[], tuple[Child, ...]] = (),
) -> None:
    """Poll ``check`` until it is true; fail fast with the log tail if a child exits
    (``children`` may be a callable that returns them, e.g. after reviving one)."""

    def step() -> None:
        for child in children() if callable(children) else children:
            if not child.alive():
                raise HostStartError(
                    f"{child.name} exited with code {child.returncode} while waiting for "
                    f"{what}; from {child.log_path}:\n{child.failure_excerpt()}"
                )
        if not check():
            raise NotYet("not yet")

    poll(what, step, deadline, interval=POLL, retry=(OSError,))


def _port_conflict(child: Child) -> bool:
    return not child.alive() and "address already in use" in child.log_tail(80).lower()


def readyz_path(exclude: tuple[str, ...] = ()) -> str:
    """kube-apiserver's /readyz, leaving out the ``exclude``d checks."""
    return "/readyz" + (f"?{urlencode([('exclude', c) for c in exclude])}" if exclude else "")


@dataclass
class Etcd:
    binary: Path
    workdir: Path
    procs: ProcessGroup
    data_dir: Path
    url: str = ""
    child: Child | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            client, peer = free_port(), free_port()
            self.url = f"http://127.0.0.1:{client}"
            peer_url = f"http://127.0.0.1:{peer}"
            self.child = self.procs.start(
                "etcd",
                [
                    str(self.binary),
                    "--name=default",
                    f"--data-dir={self.data_dir}",
                    f"--listen-client-urls={self.url}",
                    f"--advertise-client-urls={self.url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=default={peer_url}",
                    "--initial-cluster-state=new",
                    "--quota-backend-bytes=4294967296",
                    # Keys of deleted vclusters free their pages once compacted: every minute
                    # here, not the API servers' 5-10 min (the soak: +32 MiB of database per
                    # 100 vclusters until then), so a defragmentation has something to return.
                    "--auto-compaction-mode=periodic",
                    "--auto-compaction-retention=1m",
                    # A single member needs no long raft log in memory (default: up to 15,000
                    # entries, whole objects each).
                    "--snapshot-count=1000",
                    "--snapshot-catchup-entries=100",
                ],
                self.workdir / "etcd.log",
            )
            time.sleep(0.05)
            if not _port_conflict(self.child):
                return
            self.procs.forget(self.child)
        raise HostStartError("etcd could not bind a free port in 3 attempts")

    def wait_ready(self, deadline: float) -> None:
        import urllib.request

        def healthy() -> bool:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                return bool(resp.status == 200)

        assert self.child is not None
        wait_until("etcd /health", healthy, deadline, (self.child,))


@dataclass
class ControlPlane:
    """kube-apiserver (+ controller-manager, + scheduler) on a shared etcd, under one prefix."""

    name: str
    workdir: Path
    binaries: Mapping[str, Path]
    etcd_url: str
    etcd_prefix: str
    procs: ProcessGroup
    service_cidr: str = "10.96.0.0/16"
    scheduler: bool = True
    extra_apiserver_args: tuple[str, ...] = ()
    extra_controller_manager_args: tuple[str, ...] = ()
    apiserver_env: Mapping[str, str] = field(default_factory=dict)  # added to os.environ
    # A vcluster's nodes are the syncer's fake nodes: their kubelet API is the syncer's, which
    # accepts only this apiserver's kubelet client certificate and serves with its certificate.
    kubelet_client: bool = False
    progress: Progress = _quiet
    port: int = 0
    children: dict[str, Child] = field(default_factory=dict)
    _cm_restarts: int = 0

    # -- credentials
    def write_pki(self) -> None:
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        ca = pki.CertificateAuthority(f"{self.name}-ca")
        self.ca = ca
        ca.pair.write(d, "ca")
        ca_pem = ca.pair.cert_pem
        ca.issue(
            "kube-apiserver",
            dns=pki.api_server_names(),
            ips=pki.service_ip_sans(self.service_cidr),
            server=True,
        ).write(d, "apiserver")
        sa_key, sa_pub = pki.service_account_key()
        (d / "sa.key").write_bytes(sa_key)
        (d / "sa.pub").write_bytes(sa_pub)
        self._clients = {
            "admin": ca.issue(ADMIN_USER, orgs=("system:masters",), client=True),
            # system:masters because the controllers share one identity (see the flags below).
            "controller-manager": ca.issue(
                "system:kube-controller-manager", orgs=("system:masters",), client=True
            ),
            "scheduler": ca.issue("system:kube-scheduler", client=True),
        }
        self.admin = self._clients["admin"]
        self.admin.write(d, "admin")
        if self.kubelet_client:
            ca.issue("kube-apiserver-kubelet-client", client=True).write(d, "kubelet-client")
        self._ca_pem = ca_pem

    def write_kubeconfigs(self) -> None:
        for user, pair in self._clients.items():
            kubeconfig.write(
                self.workdir / f"{user}.kubeconfig",
                kubeconfig.render(
                    self.name, self.server, self._ca_pem, pair.cert_pem, pair.key_pem, user=user
                ),
            )

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def credentials(self) -> Credentials:
        d = self.workdir
        return Credentials(self.server, d / "ca.crt", d / "admin.crt", d / "admin.key")

    def rest(self) -> RestClient:
        return RestClient(self.credentials)

    # -- processes
    def apiserver_args(self) -> list[str]:
        d = self.workdir
        return [
            str(self.binaries["kube-apiserver"]),
            f"--etcd-servers={self.etcd_url}",
            f"--etcd-prefix={self.etcd_prefix}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The endpoint reconciler refuses loopback addresses; nothing in-cluster needs the
            # `kubernetes` Endpoints of a loopback-only control plane.
            "--endpoint-reconciler-type=none",
            f"--secure-port={self.port}",
            f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-account-issuer={DEFAULT_ISSUER}",  # the syncer signs tokens with it
            "--authorization-mode=Node,RBAC",
            "--anonymous-auth=false",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--allow-privileged=true",
            "--profiling=false",
            *self._kubelet_args(),
            *self.extra_apiserver_args,
        ]

    def _kubelet_args(self) -> list[str]:
        if not self.kubelet_client:
            return []
        d = self.workdir
        return [
            f"--kubelet-client-certificate={d / 'kubelet-client.crt'}",
            f"--kubelet-client-key={d / 'kubelet-client.key'}",
            f"--kubelet-certificate-authority={d / 'ca.crt'}",
            "--kubelet-preferred-address-types=Hostname",
        ]

    def controller_manager_args(self) -> list[str]:
        d = self.workdir
        return [
            str(self.binaries["kube-controller-manager"]),
            f"--kubeconfig={d / 'controller-manager.kubeconfig'}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            f"--service-account-private-key-file={d / 'sa.key'}",
            f"--root-ca-file={d / 'ca.crt'}",
            # One identity for all controllers: per-controller service-account credentials cost
            # a TokenRequest per controller and add ~5 s to start-up on 2 cores.
            "--use-service-account-credentials=false",
            f"--cluster-signing-cert-file={d / 'ca.crt'}",
            f"--cluster-signing-key-file={d / 'ca.key'}",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--profiling=false",
            *self.extra_controller_manager_args,
        ]

    def scheduler_args(self) -> list[str]:
        d = self.workdir
        return [
            str(self.binaries["kube-scheduler"]),
            f"--kubeconfig={d / 'scheduler.kubeconfig'}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--profiling=false",
        ]

    def start(self) -> None:
        """Write credentials and start every process; does not wait."""
        self.write_pki()
        self.start_processes()

    def start_processes(self) -> None:
        for _ in range(3):
            self.port = free_port()
            self.children["kube-apiserver"] = self.procs.start(
                "kube-apiserver",
                self.apiserver_args(),
                self.workdir / "kube-apiserver.log",
                env=self._env(self.apiserver_env),
            )
            time.sleep(0.02)
            if not _port_conflict(self.children["kube-apiserver"]):
                break
            self.procs.forget(self.children.pop("kube-apiserver"))
        self.write_kubeconfigs()
        self._start_controller_manager()
        if self.scheduler:
            self.children["kube-scheduler"] = self.procs.start(
                "kube-scheduler", self.scheduler_args(), self.workdir / "kube-scheduler.log"
            )

    @staticmethod
    def _env(extra: Mapping[str, str]) -> dict[str, str] | None:
        return {**os.environ, **extra} if extra else None

    def _start_controller_manager(self) -> None:
        # Started with the apiserver (not after it) to save its start-up time; it waits for the
        # apiserver's /healthz by itself, but only ~20 s.
        self.children["kube-controller-manager"] = self.procs.start(
            "kube-controller-manager",
            self.controller_manager_args(),
            self.workdir / "kube-controller-manager.log",
        )

    def _revive_controller_manager(self) -> bool:
        """Start kube-controller-manager again if it gave up waiting for a slow apiserver (a
        loaded machine: RBAC bootstrap can take longer than its fixed wait); never loops."""
        child = self.children.get("kube-controller-manager")
        if child is None or child.alive() or self._cm_restarts >= 3:
            return False
        if "failed to wait for apiserver being healthy" not in child.log_tail(40):
            return False
        self._cm_restarts += 1
        self.progress(
            f"pytest-vcluster: {self.name}: kube-controller-manager gave up on a slow "
            f"apiserver; starting it again ({self._cm_restarts}/3)"
        )
        self.procs.forget(child)
        self._start_controller_manager()
        return True

    def _watch(self) -> tuple[Child, ...]:
        self._revive_controller_manager()
        return tuple(self.children.values())

    def restart_apiserver(self, timeout: float = 60.0) -> None:
        """Kill kube-apiserver (as a crash would) and start it again on the same port."""
        old = self.children.pop("kube-apiserver")
        old.kill()  # a graceful stop waits for open watches, up to a minute
        self.procs.forget(old)
        self.children["kube-apiserver"] = self.procs.start(
            "kube-apiserver",
            self.apiserver_args(),
            self.workdir / "kube-apiserver.log",
            env=self._env(self.apiserver_env),
        )
        self.wait_apiserver(time.monotonic() + timeout)

    def wait_apiserver(self, deadline: float, exclude: tuple[str, ...] = ()) -> None:
        """Until /readyz says ready, but for the ``exclude``d checks (their work is done)."""
        client = self.rest()
        path = readyz_path(exclude)
        self.progress(f"pytest-vcluster: {self.name}: waiting for kube-apiserver {path}")
        wait_until(
            f"{self.name} kube-apiserver {path}",
            lambda: client.get(path)[0] == 200,
            deadline,
            self._watch,
        )

    def wait_apiserver_serving(self, deadline: float) -> None:
        """The apiserver answers HTTPS (any status): its storage is up, hooks may still run."""
        client = self.rest()
        wait_until(
            f"{self.name} kube-apiserver serving",
            lambda: client.get("/readyz")[0] > 0,
            deadline,
            self._watch,
        )

    def wait_default_service_account(self, deadline: float) -> None:
        client = self.rest()
        self.progress(f"pytest-vcluster: {self.name}: waiting for the default ServiceAccount")
        wait_until(
            f"{self.name} default ServiceAccount in namespace default",
            lambda: client.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            deadline,
            self._watch,
        )

    def rss(self) -> dict[str, int]:
        return {name: child.rss_bytes() for name, child in self.children.items()}
