"""A virtual cluster on the local host: its own kube-apiserver + controller-manager on the host's
etcd under ``/vcluster/<name>``, a host namespace, and the syncer as a subprocess.

The syncer gets a host identity of its own (a client certificate for ``vcluster:<name>``) bound
to a namespaced Role in the host namespace, exactly the rights it has in the Helm chart.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from .. import kept, kubeconfig
from ..errors import CleanupError, HostStartError, VClusterError
from ..kept import KeptRecord
from ..naming import host_namespace_body, host_namespace_for, namespace_taken, validate_name
from ..procs import Child, ProcessGroup, free_port, proc_starttime
from ..rest import RestClient
from ..retry import Transient, idempotent, transient_status
from ..servicecidr import discover
from . import etcd
from .base import start_or_remove
from .controlplane import ControlPlane, Progress, _quiet, wait_until
from .local_info import LocalHostInfo
from .pods import rest_tables
from .vcluster_config import (
    SYNCER_RULES,
    VCLUSTER_APISERVER_ARGS,
    VCLUSTER_APISERVER_ENV,
    VCLUSTER_CONTROLLERS,
)

__all__ = ["SYNCER_RULES", "VCLUSTER_CONTROLLERS", "LocalVCluster"]


class LocalVCluster:
    """Create with ``start()``, remove with ``delete()``; a context manager too."""

    def __init__(
        self,
        host: LocalHostInfo,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        syncer_args: tuple[str, ...] = (),
        binaries: dict[str, Path] | None = None,
        detachable: bool = False,
        progress: Progress = _quiet,
        timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.name = validate_name(name)
        self.host_namespace = host_namespace_for(name)
        self.labels = labels or {}
        self.syncer_args = syncer_args
        # Another Kubernetes version than the host's: pass its apiserver/controller-manager.
        self.binaries = {**host.binary_paths(), **(binaries or {})}
        self.progress = progress
        self.timeout = timeout
        self.workdir = Path(host.workdir) / "vclusters" / name
        self.procs = ProcessGroup(die_with_parent=not detachable)
        self.control_plane: ControlPlane | None = None
        self.syncer: Child | None = None
        self.syncer_health = ""
        self.ready_seconds = 0.0
        self.teardown_seconds = 0.0

    def __enter__(self) -> LocalVCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    @property
    def etcd_prefix(self) -> str:
        return f"/vcluster/{self.name}"

    @property
    def kubeconfig_path(self) -> Path:
        assert self.control_plane is not None
        return self.control_plane.kubeconfig_path

    def _host_rest(self) -> RestClient:
        return self.host.rest()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        start_or_remove(self._start, self.delete, self.progress)

    def _start(self) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        cidr = self.service_cidr()
        cp = ControlPlane(
            name=self.name,
            workdir=self.workdir,
            binaries=self.binaries,
            etcd_url=self.host.etcd_url,
            etcd_prefix=self.etcd_prefix,
            procs=self.procs,
            service_cidr=cidr,
            scheduler=False,
            extra_controller_manager_args=(f"--controllers={VCLUSTER_CONTROLLERS}",),
            extra_apiserver_args=VCLUSTER_APISERVER_ARGS,
            apiserver_env=VCLUSTER_APISERVER_ENV,
            kubelet_client=True,
            progress=self.progress,
        )
        self.control_plane = cp
        cp.write_pki()
        seeded = self._seed_from_host() > 0
        cp.start_processes()
        self._prepare_host_namespace()
        # Overlap the start-ups: the syncer starts once the apiserver serves (its post-start
        # hooks still running), and the ``default`` namespace is seeded at /readyz rather than
        # waiting for kube-controller-manager's ServiceAccount and root-CA controllers.
        cp.wait_apiserver_serving(deadline)
        self._start_syncer()
        # Seeded: the hooks that would write those objects have nothing left to do.
        cp.wait_apiserver(deadline, exclude=etcd.BOOTSTRAP_HOOKS if seeded else ())
        self._seed_default_namespace(deadline)
        cp.wait_default_service_account(deadline)
        self._wait_syncer(deadline)
        self.procs.supervise()  # a crashed API server, controller-manager or syncer comes back
        self.ready_seconds = time.monotonic() - t0
        self.progress(f"pytest-vcluster: vcluster {self.name} ready in {self.ready_seconds:.2f}s")

    def _seed_from_host(self) -> int:
        """Copy the host's bootstrap RBAC objects (and system PriorityClasses) into this
        vcluster's etcd prefix before its apiserver starts, when both run the same binary.

        The apiserver's ``rbac/bootstrap-roles`` hook then finds ~140 objects in place and only
        compares them, instead of creating them one by one: ~1.2 s of its ~3 s start-up on this
        machine. Only objects labelled ``kubernetes.io/bootstrapping=rbac-defaults`` and the
        ``system-`` PriorityClasses are copied, never what a test created on the host."""
        same = self.binaries.get("kube-apiserver") == self.host.binary_paths().get("kube-apiserver")
        if not same or not self.host.etcd_url:
            return 0
        from .local import HOST_PREFIX

        url = self.host.etcd_url
        prefixes = [f"{kind}/" for kind in etcd.BOOTSTRAP_RBAC] + [etcd.BOOTSTRAP_PRIORITY_CLASSES]
        found = [kv for p in prefixes for kv in etcd.get_prefix(url, f"{HOST_PREFIX}/{p}")]
        below = len(HOST_PREFIX) + 1  # the key after "<prefix>/"
        copies = [kv for kv in found if etcd.bootstrap_object(kv[0][below:].decode(), kv[1])]
        prefix = self.etcd_prefix.encode()
        etcd.put_all(url, [(prefix + key[len(HOST_PREFIX) :], value) for key, value in copies])
        return len(copies)

    def _seed_default_namespace(self, deadline: float) -> None:
        """Create what kube-controller-manager would (it adopts them): the ``default``
        ServiceAccount pods need, and ``kube-root-ca.crt`` the syncer reads the CA from."""
        assert self.control_plane is not None
        rest = self.control_plane.rest()
        ca = (self.workdir / "ca.crt").read_text()
        for path, body in (
            ("serviceaccounts", {"metadata": {"name": "default"}}),
            ("configmaps", {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca}}),
        ):

            @idempotent(attempts=1000, within=max(0.0, deadline - time.monotonic()))
            def create(path: str = path, body: dict[str, Any] = body) -> None:
                status, resp = rest.request("POST", f"/api/v1/namespaces/default/{path}", body)
                # 404: the bootstrap controller has not created namespace default yet
                if status == 404 or transient_status(status):
                    raise Transient(f"creating default {path}: {status} {resp}")
                if status not in (201, 409):
                    raise HostStartError(f"vcluster {self.name}: creating default {path}: {resp}")

            try:
                create()
            except Transient as exc:
                raise HostStartError(f"vcluster {self.name}: {exc}") from None

    def service_cidr(self) -> str:
        """The host's service range (the syncer keeps a Service's ClusterIP on both sides)."""
        rest = self._host_rest()

        def servicecidrs() -> dict[str, Any] | None:
            status, body = rest.get("/apis/networking.k8s.io/v1/servicecidrs")
            return body if status == 200 and isinstance(body, dict) else None

        def create(body: dict[str, Any]) -> tuple[int, Any]:
            return rest.request("POST", "/api/v1/namespaces/default/services", body)

        def delete(name: str) -> None:
            rest.request("DELETE", f"/api/v1/namespaces/default/services/{name}")

        try:
            return discover(servicecidrs, create, delete, "default")
        except VClusterError as exc:
            raise HostStartError(f"the host's service range: {exc}") from None

    def _prepare_host_namespace(self) -> None:
        rest = self._host_rest()
        ns = self.host_namespace
        body = host_namespace_body(self.name, self.labels)
        for path, obj in (
            ("/api/v1/namespaces", body),
            (
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
                {"metadata": {"name": "vcluster-syncer"}, "rules": SYNCER_RULES},
            ),
            (
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
                {
                    "metadata": {"name": "vcluster-syncer"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": "vcluster-syncer",
                    },
                    "subjects": [
                        {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "User",
                            "name": self.syncer_user,
                        }
                    ],
                },
            ),
        ):
            status, resp = rest.request("POST", path, obj)
            if status == 409 and path == "/api/v1/namespaces":
                raise namespace_taken(self.name)
            if status not in (201, 409):
                raise HostStartError(f"creating {path} on the host failed ({status}): {resp}")

    @property
    def syncer_user(self) -> str:
        return f"vcluster:{self.name}"

    def _start_syncer(self) -> None:
        assert self.control_plane is not None
        ca = self.host.ca()
        pair = ca.issue(self.syncer_user, client=True)
        host_kc = kubeconfig.write(
            self.workdir / "syncer-host.kubeconfig",
            kubeconfig.render(
                "host", self.host.server, ca.pair.cert_pem, pair.cert_pem, pair.key_pem
            ),
        )
        d = self.control_plane.workdir
        argv = [
            sys.executable,
            "-m",
            "syncer",
            f"--name={self.name}",
            f"--host-namespace={self.host_namespace}",
            f"--virtual-kubeconfig={self.control_plane.kubeconfig_path}",
            f"--host-kubeconfig={host_kc}",
            # Fixed ports: a restarted syncer (procs.supervise) answers where this one did.
            f"--health-address=127.0.0.1:{free_port()}",
            f"--api-service-host={self.control_plane.server.split('://')[1].rsplit(':', 1)[0]}",
            f"--api-service-port={self.control_plane.port}",
            # The fake nodes' kubelet API; host pods are kwok's, so it answers with a clear
            # error instead of a hang (in the chart it forwards to real containers).
            f"--kubelet-address=127.0.0.1:{free_port()}",
            f"--kubelet-cert-file={d / 'apiserver.crt'}",
            f"--kubelet-key-file={d / 'apiserver.key'}",
            f"--kubelet-client-ca-file={d / 'ca.crt'}",
            f"--kubelet-client-cert-file={d / 'kubelet-client.crt'}",
            "--simulated-host",
            # Pods' tokens signed with the API server's own key, as its TokenRequest would.
            f"--token-signing-key={d / 'sa.key'}",
            # Snapshot and reset (VCluster.reset()) work on its keys of the shared etcd.
            *(
                (f"--etcd-url={self.host.etcd_url}", f"--etcd-prefix={self.etcd_prefix}")
                if self.host.etcd_url
                else ()
            ),
            *self.syncer_args,
        ]
        log = self.workdir / "syncer.log"
        self._syncer_log_offset = log.stat().st_size if log.exists() else 0  # restarts append
        self.syncer = self.procs.start("syncer", argv, log)

    def _wait_syncer(self, deadline: float) -> None:
        """Until its /readyz answers. Its ports were free when picked, but another process may
        bind one before it does (four vclusters starting at once: once in 1,000 in the soak):
        then it starts again on new ones, twice at most."""
        for attempt in range(3):
            try:
                self._wait_syncer_once(deadline)
                return
            except HostStartError:
                if attempt == 2 or not self._syncer_lost_a_port():
                    raise
            assert self.syncer is not None
            self.progress(f"pytest-vcluster: vcluster {self.name}: syncer port taken, new ports")
            self.procs.forget(self.syncer)
            self.syncer_health = ""
            self._start_syncer()

    def _syncer_lost_a_port(self) -> bool:
        assert self.syncer is not None
        if self.syncer.alive():
            return False
        text = self.syncer.log_path.read_bytes()[self._syncer_log_offset :]
        return b"[Errno 98] Address already in use" in text

    def _wait_syncer_once(self, deadline: float) -> None:
        assert self.syncer is not None
        log, offset = self.syncer.log_path, self._syncer_log_offset
        self.progress(f"pytest-vcluster: vcluster {self.name}: waiting for the syncer")

        def ready() -> bool:
            if not self.syncer_health:
                text = log.read_bytes()[offset:].decode(errors="replace")
                m = re.search(r"syncer: health on (\S+)", text)
                if not m:
                    return False
                self.syncer_health = m.group(1)
            url = f"http://{self.syncer_health}/readyz"
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)

        wait_until(f"vcluster {self.name} syncer /readyz", ready, deadline, (self.syncer,))

    def restart_syncer(self) -> None:
        """Kill the syncer (SIGKILL, as a crash would) and start a new one."""
        assert self.syncer is not None
        self.syncer.restart = False  # this kill is ours: no automatic restart
        self.syncer.kill()
        self.procs.forget(self.syncer)
        self.syncer_health = ""
        self._start_syncer()
        self._wait_syncer(time.monotonic() + self.timeout)
        self.procs.supervise([self.syncer])

    def delete(self, wait: bool = True) -> None:
        """Stop the processes, drop the etcd prefix and the host namespace. Nothing is left to
        wait for when this returns, with or without ``wait``. What could not be removed (the
        host is gone, etcd refused) is a ``CleanupError`` once everything else is done."""
        t0 = time.monotonic()
        self.procs.stop(timeout=0)
        problems = []
        try:
            etcd.delete_prefix(self.host.etcd_url, self.etcd_prefix + "/")
        except etcd.EtcdError as exc:
            problems.append(f"its objects (etcd prefix {self.etcd_prefix}): {exc}")
        else:
            with contextlib.suppress(etcd.EtcdError):  # space, not state: tried again next time
                etcd.defragment_if_worth(self.host.etcd_url)
        try:
            self._delete_host_namespace()
        except (OSError, Transient, HostStartError) as exc:
            problems.append(f"host namespace {self.host_namespace}: {exc}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.teardown_seconds = time.monotonic() - t0
        if problems:
            raise CleanupError(f"vcluster {self.name}: not removed: {'; '.join(problems)}")

    def wait_deleted(self, timeout: float = 120) -> bool:
        return True  # delete() leaves nothing behind to wait for

    @idempotent(attempts=3)
    def _delete_host_namespace(self) -> None:
        status, resp = self._host_rest().request(
            "DELETE", f"/api/v1/namespaces/{self.host_namespace}"
        )
        if transient_status(status):
            raise Transient(f"deleting namespace {self.host_namespace}: {status} {resp}")
        if status not in (200, 202, 404):
            raise HostStartError(f"deleting namespace {self.host_namespace}: {status} {resp}")

    def detach(self) -> KeptRecord:
        """Keep running after this process ends; the record lets `reap` find it later."""
        children = self.procs.detach()
        return KeptRecord(
            kind=kept.LOCAL,
            name=self.name,
            host_namespace=self.host_namespace,
            kubeconfig=str(self.kubeconfig_path),
            workdir=str(self.workdir),
            etcd_url=self.host.etcd_url,
            etcd_prefix=self.etcd_prefix,
            host_supervisor_pid=self.host.supervisor_pid,
            pids={str(c.pid): proc_starttime(c.pid) for c in children if c.alive()},
        )

    def diagnostics(self, log_lines: int = 60) -> dict[str, str]:
        """Report sections for a failed test: restarted processes, pods, events, syncer log,
        name map."""
        out: dict[str, str] = {}
        restarts = self.procs.restarts()
        if restarts:
            out["restarted processes"] = "\n".join(
                f"{name}: restarted after {', '.join(exits)}" for name, exits in restarts.items()
            )
        if self.syncer is not None:
            if log_lines:
                out["syncer log (tail)"] = self.syncer.log_tail(log_lines)
            else:
                out["syncer log"] = self.syncer.log_path.read_text(errors="replace")
        if self.control_plane is not None:
            out.update(rest_tables(self.control_plane.rest(), "virtual"))
        out.update(rest_tables(self._host_rest(), "host", self.host_namespace))
        return out

    def rss(self) -> dict[str, int]:
        return {c.name: c.rss_bytes() for c in self.procs.children}

    def lift_cpu_budget(self) -> None:
        """Local vclusters start without one (a prewarm is a few seconds of this machine's CPU,
        which ``nice`` cannot shift onto another machine)."""
