"""An in-cluster vcluster's lifecycle: a Helm release of ``chart/`` in its own host namespace.

Start: images (the host loads them where it must: kind) → host namespace (labelled with the
run, an expiry and the chart's pod security level) → the host's service range → the API
Service (a NodePort where this machine routes to the host's node: ``nodeport.py``) →
certificates → ``helm install`` → staged readiness (``readiness.py``) at that node port, else
through the port-forward (``forward.py``). Delete: ``helm uninstall`` (the syncer's host
objects are owned by the release's Service, so the garbage collector removes them), then the
namespace is marked for deletion and its pods are removed at once (synced pods may ignore
SIGTERM for their whole grace period); the namespace object itself goes after the namespace
controller's fixed 5 s, which ``wait_deleted()`` waits for.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ... import kubeconfig as kubeconfig_file
from ...errors import CleanupError, InClusterError, ReadinessTimeoutError
from ...kept import CHART, KeptRecord
from ...naming import host_namespace_body, host_namespace_for, validate_name
from ...procs import ProcessGroup, proc_starttime
from ...rest import Credentials, RestClient
from ...spec import VClusterSpec, check_supported
from ...values import chart_defaults, deep_merge
from ...wait import NotYet, poll
from ..base import Progress, RuntimeOptions, quiet, start_or_remove
from ..pods import events_table, pods_table, rest_tables
from . import chart
from .budget import CpuBudget, lifted_resources, resize_patch
from .forward import Forwards
from .host import ClusterHost
from .hostapi import HostApi
from .nodeport import NodePorts, reachable
from .podwatch import PodWatch
from .readiness import Readiness, Stages, _retry

_facts: dict[tuple[str, str], str] = {}  # (fact, host kubeconfig) -> service CIDR, image


class InClusterVCluster:
    """Create with ``start()``, remove with ``delete()``; a context manager too."""

    def __init__(
        self,
        host: ClusterHost,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        syncer_args: tuple[str, ...] = (),
        values: Mapping[str, Any] | None = None,
        images: Mapping[str, str] | None = None,
        binaries: Mapping[str, Path] | None = None,
        k8s_version: str | None = None,
        chart_path: Path = chart.CHART_DIR,
        detachable: bool = False,
        node_port: bool = True,
        cpu_budget: str | None = None,
        progress: Progress = quiet,
        timeout: float = 120.0,
    ) -> None:
        self.host = host
        self.name = validate_name(name)
        self.release = name
        self.host_namespace = host_namespace_for(name)
        self.labels = dict(labels or {})
        self.syncer_args = syncer_args
        self.values = dict(values or {})
        self.images = dict(images or {})
        self.tools = host.tools().with_paths(dict(binaries or {}))
        self.tools.progress = progress
        self.k8s_version = k8s_version or host.k8s_version
        self.chart = chart_path
        self.progress = progress
        self.timeout = timeout
        self.workdir = host.workdir / "vclusters" / name
        self.procs = ProcessGroup(die_with_parent=not detachable)
        self.node_port = node_port  # may reach the API at a NodePort of the host's node
        self.access: Forwards | NodePorts = Forwards(
            host.kubeconfig, self.host_namespace, self.pod_name
        )
        self.stages = Stages(name, progress)
        self.budget = CpuBudget(cpu_budget)
        self.ready_seconds = 0.0
        self.teardown_seconds = 0.0
        self.deleted_seconds = 0.0  # from delete() until the host namespace was gone
        self.dns_ip = ""
        self._delete_t0 = 0.0
        self._installed = False
        self._namespace_created = False
        self._api: HostApi | None = None
        self._watch: PodWatch | None = None

    def __enter__(self) -> InClusterVCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    # -- what it is -----------------------------------------------------------------------------
    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pod_name(self) -> str:
        return f"{self.release}-0"

    @property
    def timings(self) -> dict[str, float]:
        return self.stages.timings

    @property
    def local_port(self) -> int:
        """The port of ``server`` (the port-forward's, or the node port)."""
        return self.access.api_port

    @property
    def server(self) -> str:
        return self.access.server

    @property
    def port_forward_stats(self) -> dict[str, Any]:
        return self.access.stats

    def rest(self) -> RestClient:
        """cluster-admin on the vcluster's API server, as this process reaches it."""
        d = self.workdir / "pki"
        creds = Credentials(self.server, d / "ca.crt", d / "admin.crt", d / "admin.key")
        return RestClient(creds, timeout=2.0)

    def helm(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [str(self.tools.path("helm")), "--kubeconfig", self.host.kubeconfig, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def _host_api(self) -> HostApi:
        if self._api is None:
            self._api = HostApi(self.host.kubeconfig)
        return self._api

    def _fact(self, name: str, read: Any) -> str:
        key = (name, self.host.kubeconfig)
        if key not in _facts:
            _facts[key] = read()
        return _facts[key]

    # -- start ----------------------------------------------------------------------------------
    def start(self) -> None:
        start_or_remove(self._start, self.delete, self.progress)

    def _start(self) -> None:
        self.stages = Stages(self.name, self.progress)
        deadline = self.stages.t0 + self.timeout
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        images = self.images or self.host.images(self.k8s_version, self.progress)
        loaded = self.host.load_images(list(images.values()), self.progress)
        if loaded:
            self.stages.timings["kind load"] = round(loaded, 2)
        api = self._host_api()
        level = chart.pod_security_level(self.values)
        api.create_namespace(host_namespace_body(self.name, self.labels, level), self.name)
        self._namespace_created = True
        cidr = self._fact("cidr", lambda: api.service_cidr(self.host_namespace))
        address = self._node_address()
        service = api.create_service(
            chart.api_service_body(self.release, self.host_namespace, self.values, bool(address))
        )
        ports = service["spec"].get("ports") or [{}]
        node_port = int(ports[0].get("nodePort") or 0)
        if address and reachable(address, node_port):
            self.access = NodePorts(address, node_port)
        elif address:
            self.progress(
                f"pytest-vcluster: vcluster {self.name}: node port {address}:{node_port} not "
                "reachable from here: through a port-forward"
            )
            address = ""
        chart.write_pki(
            self.workdir / "pki", self.name, self.release, self.host_namespace, cidr,
            str(service["spec"].get("clusterIP") or ""), address,
        )  # fmt: skip
        dns_image = self._fact("coredns", api.coredns_image)
        values = chart.chart_values(images, cidr, dns_image, self.syncer_args, self.values)
        if node_port:  # helm adopts the Service as made (and keeps the port it was given)
            values = deep_merge(
                values, {"service": {"type": service["spec"]["type"], "nodePort": node_port}}
            )
        lifted = lifted_resources(self.budget.cpu, values, chart_defaults())
        self.stages.passed("images and certificates")
        self._install(deep_merge(values, self.budget.values()))
        self.stages.passed("helm install")
        self._watch = PodWatch(api, self.host_namespace, self.pod_name)
        ready = Readiness(
            self.name, self.host_namespace, self.pod_name, api, self._watch, self.stages, deadline
        )
        admin = yaml.safe_load(
            api.secret_value(self.host_namespace, f"vc-{self.release}", "config")
        )
        ready.running()
        self.budget.pod_exists(lambda: self._resize(api, lifted))
        self.access.start(deadline)
        self._write_kubeconfig(admin)
        self.stages.passed("port-forward" if isinstance(self.access, Forwards) else "node port")
        rest = self.rest()
        ready.endpoints(rest, chart.readyz_exclude(values))
        ready.default_service_account(rest)
        if chart.coredns_enabled(values):
            dns = chart.dns_host_service(values, self.release, self.name)
            self.dns_ip = ready.dns(rest, dns)
        self._stop_watch()
        self.ready_seconds = time.monotonic() - self.stages.t0
        self.progress(f"pytest-vcluster: vcluster {self.name} ready in {self.ready_seconds:.2f}s")

    def _install(self, values: Mapping[str, Any]) -> None:
        path = self.workdir / "values.yaml"
        path.write_text(chart.values_yaml(values))
        proc = self.helm(
            "install", self.release, str(self.chart), "--namespace", self.host_namespace,
            "--values", str(path), *chart.pki_args(self.workdir / "pki"),
        )  # fmt: skip
        if proc.returncode != 0:
            raise InClusterError(
                f"helm install of vcluster {self.name!r} failed: {chart.helm_error(proc.stderr)}"
            )
        self._installed = True

    def _node_address(self) -> str:
        """The host node to reach the API server at, "" for a port-forward: the host's, unless
        the user chose the port-forward or a Service type of their own."""
        kind = (self.values.get("service") or {}).get("type")
        if not self.node_port or kind not in (None, "NodePort"):
            return ""
        return self.host.node_address()

    def _write_kubeconfig(self, admin: dict[str, Any]) -> None:
        """The chart's admin kubeconfig (Secret ``vc-<release>``) pointed at ``server``."""
        cfg = copy.deepcopy(admin)
        for cluster in cfg.get("clusters") or []:
            cluster["cluster"]["server"] = self.server
        kubeconfig_file.write(self.kubeconfig_path, cfg)

    def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None

    # -- teardown -------------------------------------------------------------------------------
    def delete(self, wait: bool = True) -> None:
        """``helm uninstall``, then the namespace: marked for deletion (nothing new can be created
        in it), its pods removed at once and its claims waited for. With ``wait=False`` this
        returns before the namespace object is gone; ``wait_deleted()`` waits for that (the
        plugin waits for all of a session's namespaces at its end, in parallel)."""
        t0 = self._delete_t0 = time.monotonic()
        self.access.stop()
        self._stop_watch()
        self.procs.stop(timeout=2)
        if self._installed:
            self._uninstall()
        problem = ""
        if self._namespace_created:
            failures: tuple[type[BaseException], ...] = (ReadinessTimeoutError, *_retry())
            try:
                self._empty_namespace(time.monotonic() + 60)
            except failures as exc:
                problem = f"host namespace {self.host_namespace}: {exc}"
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.teardown_seconds = time.monotonic() - t0
        if not problem and wait and not self.wait_deleted():
            problem = f"host namespace {self.host_namespace} still exists"
        if not self._namespace_created:
            self._close_host_api()
        if problem:
            raise CleanupError(f"vcluster {self.name}: not removed: {problem}")

    def _uninstall(self) -> None:
        """Deleting the namespace removes the release too: a failure here is only reported."""
        try:
            proc = self.helm("uninstall", self.release, "-n", self.host_namespace, timeout=60)
        except (subprocess.TimeoutExpired, OSError) as exc:
            self.progress(f"pytest-vcluster: helm uninstall {self.release}: {exc}")
            return
        if proc.returncode == 0 or "not found" in proc.stderr:
            self._installed = False
        else:
            self.progress(f"pytest-vcluster: helm uninstall {self.release}: {proc.stderr}")

    def _empty_namespace(self, end: float) -> None:
        api, ns = self._host_api(), self.host_namespace
        if not api.delete_namespace(ns):
            self._namespace_created = False
            return
        api.delete_pods_now(ns)

        def empty() -> None:
            pods, claims = api.pods_or_claims_left(ns)
            if pods:  # e.g. re-created by the StatefulSet before the namespace was terminating
                api.delete_pods_now(ns)
            if pods or claims:
                raise NotYet(f"pods left: {pods}, claims left: {claims}")

        poll(f"host namespace {ns} emptied", empty, end, retry=_retry())

    def wait_deleted(self, timeout: float = 120) -> bool:
        """Wait until the host namespace is gone; whether it is. Sets ``deleted_seconds`` (from
        the start of ``delete()``)."""
        try:
            if self._namespace_created:
                api, ns = self._host_api(), self.host_namespace

                def gone() -> None:
                    if api.namespace_exists(ns):
                        raise NotYet("terminating")

                try:
                    poll(
                        f"host namespace {ns} gone",
                        gone,
                        time.monotonic() + timeout,
                        retry=_retry(),
                    )
                except ReadinessTimeoutError:
                    return False
                self._namespace_created = False
            self.deleted_seconds = time.monotonic() - self._delete_t0
            return True
        finally:
            self._close_host_api()

    def _close_host_api(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def detach(self) -> KeptRecord:
        """Keep running after this process ends (the port-forward too); a record for ``reap``."""
        self.access.detach(
            self.tools.path("kubectl"), self.procs, self.workdir / "port-forward.log"
        )
        self._stop_watch()
        children = self.procs.detach()
        self._installed = self._namespace_created = False  # no longer ours to delete
        self._close_host_api()
        return KeptRecord(
            kind=CHART,
            name=self.name,
            host_namespace=self.host_namespace,
            kubeconfig=str(self.kubeconfig_path),
            workdir=str(self.workdir),
            release=self.release,
            host_kubeconfig=self.host.kubeconfig,
            pids={str(c.pid): proc_starttime(c.pid) for c in children if c.alive()},
        )

    # -- for reports ------------------------------------------------------------------------------
    def diagnostics(self, log_lines: int = 60) -> dict[str, str]:
        """Report sections for a failed test: host pods and events, container log tails, the
        vcluster's own pods and events."""
        ns, out = self.host_namespace, {}
        api = self._host_api()
        try:
            out["host pods"] = pods_table(api.pods(ns))
            out["host events"] = events_table(api.events(ns))
            for container in ("control-plane", "syncer"):
                text = api.log(ns, self.pod_name, container, tail=log_lines or None)
                out[f"{container} log" + (" (tail)" if log_lines else "")] = text
        except _retry() as exc:
            out["host"] = f"(could not read: {type(exc).__name__}: {exc})"[:1000]
        if self.access.active:
            if self.access.stats:
                out["port-forward"] = json.dumps(self.access.stats)
            out.update(rest_tables(self.rest(), "virtual"))
        return out

    def rss(self) -> dict[str, int]:
        """Memory of the vcluster pod's containers (bytes); {} where the host cannot say."""
        return self.host.container_rss(self.host_namespace, self.pod_name)

    def lift_cpu_budget(self) -> None:
        self.budget.lift()

    def _resize(self, api: HostApi, resources: Mapping[str, Mapping[str, str]]) -> None:
        """Lift the budget; a host that cannot resize in place (< 1.33) leaves it slower only."""
        failures: tuple[type[BaseException], ...] = (InClusterError, *_retry())
        try:
            api.resize_pod(self.host_namespace, self.pod_name, resize_patch(resources))
        except failures as exc:
            self.progress(f"pytest-vcluster: vcluster {self.name}: CPU budget kept: {exc}")
            return
        self.progress(f"pytest-vcluster: vcluster {self.name}: CPU budget lifted")


def new_release(
    host: ClusterHost, spec: VClusterSpec, options: RuntimeOptions
) -> InClusterVCluster:
    """A vcluster of ``spec`` (named) as a Helm release on a chart host (kind, kubeconfig)."""
    assert spec.name is not None
    check_supported(spec, host.kind, host.provides, f"vcluster {spec.name}")
    # Any version with a control-plane image runs on any host (the image is the version).
    version = str(spec.k8s_version) if spec.k8s_version else host.k8s_version
    return InClusterVCluster(
        host,
        spec.name,
        k8s_version=version,
        labels=options.labels,
        syncer_args=spec.syncer_args(),
        values=spec.values,
        images=options.images,
        binaries=options.binaries,
        progress=options.progress,
        timeout=options.timeout,
        detachable=options.detachable,
        node_port=options.node_port,
        cpu_budget=options.cpu_budget,
    )
