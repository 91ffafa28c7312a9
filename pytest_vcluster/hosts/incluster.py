"""A virtual cluster inside a real host cluster (kind today): a Helm release of ``chart/``.

One host namespace per vcluster (``vcluster-<name>``, labelled like the local runtime's), in it
the release ``<name>``: a StatefulSet whose pod runs the control-plane container (etcd +
kube-apiserver + kube-controller-manager, data on emptyDir) and the syncer container, a Service
for the API server, the syncer's ServiceAccount with a namespaced Role, and the admin kubeconfig
as Secret ``vc-<name>``.

The plugin generates the certificates (``pytest_vcluster.pki``, microseconds) and hands them to
``helm install`` with ``--set-file``: the release owns them, nothing is created beside it, and
the API server certificate can name the Service, ``localhost`` and ``127.0.0.1`` (the
port-forward this process reaches the vcluster through).

Readiness is staged and fails fast: ``helm install`` (values errors) → pod scheduled → images
pulled and containers running (ImagePullBackOff, CrashLoopBackOff, Unschedulable abort at once
with the reason, read from a ``kubectl get -w`` stream) → port-forward of the API server and
the syncer's health port → kube-apiserver ``/readyz`` and syncer ``/readyz`` polled through it
every 0.1 s (not waiting for the kubelet's Ready condition) → ``default`` ServiceAccount → the
vcluster's DNS Service (CoreDNS, created by the syncer) has its final ClusterIP.

The port-forward (``pytest_vcluster.portforward``) opens one tunnel per local connection:
a broken stream or a restarted pod ends only the connections it carried, and the next
connection opens a new tunnel on the same local port.

Teardown deletes the namespace (the Helm release record is a Secret in it) and force-deletes
its pods (synced pods may ignore SIGTERM for their whole grace period), then waits until the
namespace is gone.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .. import kubeconfig
from ..docker import containerd_ref
from ..errors import HostStartError, ReadinessTimeoutError, VClusterError
from ..naming import default_cache_dir, host_namespace_for, validate_name
from ..portforward import HostEndpoint, PortForward, PortForwardError
from ..portforward import stats as port_forward_stats
from ..procs import Child, ProcessGroup, proc_starttime
from ..rest import Credentials, RestClient
from ..servicecidr import cidrs_from_servicecidrs
from ..versions import parse_k8s_version
from .base import HostInfo
from .controlplane import ADMIN_USER, Progress, _first_service_ip, _quiet
from .kind import pod_problem


def chart_dir() -> Path:
    """The chart in the package (``pytest_vcluster/chart``, a wheel), else the repo's."""
    packaged = Path(__file__).resolve().parents[1] / "chart"
    if (packaged / "Chart.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "chart"


CHART_DIR = chart_dir()
CONTROL_PLANE_REPO = "pytest-vcluster/control-plane"
SYNCER_REPO = "pytest-vcluster/syncer"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"  # kind's default
PKI_VALUES = {
    "caCert": "ca.crt",
    "caKey": "ca.key",
    "apiServerCert": "apiserver.crt",
    "apiServerKey": "apiserver.key",
    "adminCert": "admin.crt",
    "adminKey": "admin.key",
    "serviceAccountKey": "sa.key",
    "serviceAccountPub": "sa.pub",
    "kubeletClientCert": "kubelet-client.crt",
    "kubeletClientKey": "kubelet-client.key",
}

_loaded: set[tuple[str, str]] = set()  # (kind cluster, image) loaded by this process
_load_lock = threading.Lock()
_host_facts: dict[tuple[str, str], str] = {}  # (fact, host kubeconfig) -> service CIDR, image


class _JsonStream:
    """Concatenated JSON documents appended to a file (``kubectl get -w -o json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.buffer = ""
        self._decoder = json.JSONDecoder()

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        self.offset += len(data)
        self.buffer += data.decode("utf-8", errors="replace")
        out = []
        while True:
            text = self.buffer.lstrip()
            if not text.startswith("{"):
                # kubectl's own messages (errors) are not JSON: keep only from the next object
                cut = text.find("\n{")
                if cut < 0:
                    self.buffer = text if not text or text[0] == "{" else ""
                    break
                text = text[cut + 1 :]
            try:
                obj, end = self._decoder.raw_decode(text)
            except ValueError:
                self.buffer = text  # incomplete: wait for the rest
                break
            if isinstance(obj, dict):
                out.append(obj)
            self.buffer = text[end:]
        return out


class InClusterError(VClusterError):
    """The Helm release of a vcluster could not be installed, started or removed."""


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def split_image(ref: str) -> tuple[str, str]:
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        return ref, "latest"
    return repo, tag


def newest_local_image(repo: str, tag_prefix: str = "") -> str | None:
    """The most recently created ``repo:<tag_prefix>*`` image in Docker, if any."""
    from ..docker import find_cli

    docker = find_cli()
    out = docker.run(
        ["images", "--format", "{{.Repository}}:{{.Tag}}\t{{.CreatedAt}}", repo], check=False
    ).stdout.decode()
    rows = [ln.split("\t") for ln in out.splitlines() if "\t" in ln]
    mine = [r for r in rows if r[0].split(":", 1)[1].startswith(tag_prefix)]
    return max(mine, key=lambda r: r[1])[0] if mine else None


def resolve_images(k8s_version: str) -> dict[str, str]:
    """Image refs: ``PYTEST_VCLUSTER_{CONTROL_PLANE,SYNCER}_IMAGE``, else the newest built."""
    tag = parse_k8s_version(k8s_version).tag
    images: dict[str, str] = {}
    wanted = (
        (
            "controlPlane",
            CONTROL_PLANE_REPO,
            tag + "-",
            f"control-plane/build.py --k8s-version {k8s_version}",
        ),
        ("syncer", SYNCER_REPO, "", "syncer/build.py"),
    )
    for key, repo, prefix, build in wanted:
        env = "PYTEST_VCLUSTER_" + repo.split("/")[1].replace("-", "_").upper() + "_IMAGE"
        ref = os.environ.get(env) or newest_local_image(repo, prefix)
        if not ref:
            raise InClusterError(
                f"no {repo} image for Kubernetes {k8s_version} in Docker: build it with "
                f"`nice -n 19 python images/{build}` (or set {env})"
            )
        images[key] = ref
    return images


class InClusterVCluster:
    """Create with ``start()``, remove with ``delete()``; a context manager too."""

    def __init__(
        self,
        host: HostInfo,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        syncer_args: tuple[str, ...] = (),
        values: Mapping[str, Any] | None = None,
        images: Mapping[str, str] | None = None,
        binaries: Mapping[str, Path] | None = None,
        k8s_version: str | None = None,
        chart: Path = CHART_DIR,
        detachable: bool = False,
        progress: Progress = _quiet,
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
        self.binaries = {**host.binary_paths(), **dict(binaries or {})}
        self.k8s_version = k8s_version or host.k8s_version
        self.chart = chart
        self.progress = progress
        self.timeout = timeout
        self.workdir = Path(host.workdir) / "vclusters" / name
        self.procs = ProcessGroup(die_with_parent=not detachable)
        self._forwards: list[PortForward] = []
        self.local_port = 0
        self.ready_seconds = 0.0
        self.teardown_seconds = 0.0
        self.deleted_seconds = 0.0  # until the host namespace was gone
        self._delete_t0 = 0.0
        self.timings: dict[str, float] = {}
        self._installed = False
        self._namespace_created = False
        self._t0 = 0.0
        self._kubeconfig: dict[str, Any] = {}
        self.health_port = 0
        self.dns_ip = ""
        self._pod_watch: Child | None = None
        self._pod_stream: _JsonStream | None = None
        self._pod: dict[str, Any] | None = None
        self._host_api: Any = None
        self._pod_watch_restarts = 0

    def __enter__(self) -> InClusterVCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pod_name(self) -> str:
        return f"{self.release}-0"

    @property
    def kind_cluster(self) -> str:
        # KindHost.info() puts the host's files under <cache>/kind/<cluster name>.
        return Path(self.host.workdir).name

    @property
    def cache_dir(self) -> Path:
        if self.host.kind in ("kind", "kubeconfig"):  # <cache>/<kind>/<cluster or context>
            return Path(self.host.workdir).parents[1]
        return default_cache_dir()

    # -- tools ----------------------------------------------------------------------------------
    def _tool(self, tool: str) -> Path:
        if tool not in self.binaries:
            from ..binaries import BinaryResolver

            resolver = BinaryResolver(
                parse_k8s_version(self.host.k8s_version), self.cache_dir, progress=self.progress
            )
            self.binaries[tool] = resolver.resolve(tool).path
        return self.binaries[tool]

    def _run(
        self, argv: list[str], *, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, input=input, check=False
        )

    def kubectl(
        self, *args: str, timeout: float = 30, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self._tool("kubectl")), "--kubeconfig", self.host.kubeconfig, *args]
        return self._run(argv, timeout=timeout, input=input)

    def helm(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [str(self._tool("helm")), "--kubeconfig", self.host.kubeconfig, *args]
        return self._run(argv, timeout=timeout)

    def _json(self, *args: str) -> Any:
        proc = self.kubectl(*args, "-o", "json")
        if proc.returncode != 0:
            raise InClusterError(f"kubectl {' '.join(args)}: {proc.stderr.strip()[-1000:]}")
        return json.loads(proc.stdout)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.delete()
            raise

    def _stage(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.monotonic() - t0, 2)
        self.progress(f"pytest-vcluster: vcluster {self.name}: {name} ({self.timings[name]:.2f}s)")

    def _start(self) -> None:
        t0 = self._t0 = time.monotonic()
        deadline = t0 + self.timeout
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        images = self.images or resolve_images(self.k8s_version)
        self._load_images(list(images.values()))
        cidr = self.service_cidr()
        self._write_pki(cidr)
        values = self.chart_values(images, cidr, self.host_coredns_image())
        self._stage("images and certificates", t0)
        self._create_namespace(values)
        self._install(values)
        self._stage("helm install", t0)
        self._watch_pod()
        self._read_kubeconfig()
        self._wait_running(deadline, t0)
        self._start_port_forward(deadline)
        self._stage("port-forward", t0)
        self._wait_endpoints(deadline)
        self._wait_default_service_account(deadline)
        if (values.get("coredns") or {}).get("enabled", True):
            self._wait_dns(deadline)
        self._stop_pod_watch()
        self.ready_seconds = time.monotonic() - t0
        self.progress(f"pytest-vcluster: vcluster {self.name} ready in {self.ready_seconds:.2f}s")

    # -- images ---------------------------------------------------------------------------------
    def _load_images(self, images: list[str]) -> None:
        if self.host.kind != "kind":
            return  # another host pulls them from its registry
        with _load_lock:
            todo = [i for i in images if (self.kind_cluster, i) not in _loaded]
            if not todo:
                return
            present = self._images_in_nodes()
            _loaded.update((self.kind_cluster, i) for i in todo if containerd_ref(i) in present)
            todo = [i for i in todo if (self.kind_cluster, i) not in _loaded]
            if not todo:
                return
            t0 = time.monotonic()
            kind = self._tool("kind")
            argv = [str(kind), "load", "docker-image", "--name", self.kind_cluster, *todo]
            proc = self._run(argv, timeout=600)
            if proc.returncode != 0:
                raise InClusterError(
                    f"kind load docker-image {' '.join(todo)} failed: "
                    f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
                )
            self.timings["kind load"] = round(time.monotonic() - t0, 2)
            _loaded.update((self.kind_cluster, i) for i in todo)

    def _images_in_nodes(self) -> set[str]:
        """Images every node of the kind cluster has already (a reused cluster, a preloaded
        node image): those need no ``kind load`` (~30 s for both images)."""
        from ..docker import find_cli

        docker = find_cli()
        nodes = docker.run(
            ["ps", "--filter", f"label=io.x-k8s.kind.cluster={self.kind_cluster}", "-q"],
            check=False,
        ).stdout.split()
        common: set[str] | None = None
        for node in nodes:
            out = docker.run(
                ["exec", node.decode(), "ctr", "-n", "k8s.io", "images", "ls", "-q"], check=False
            )
            refs = set(out.stdout.decode().split()) if out.returncode == 0 else set()
            common = refs if common is None else common & refs
        return common or set()

    # -- host facts -----------------------------------------------------------------------------
    def service_cidr(self) -> str:
        """The host's service range (synced Services keep their host ClusterIPs)."""
        key = ("cidr", self.host.kubeconfig)
        if key not in _host_facts:
            cidr = DEFAULT_SERVICE_CIDR
            proc = self.kubectl("get", "servicecidrs.networking.k8s.io", "-o", "json")
            if proc.returncode == 0:
                with contextlib.suppress(ValueError):
                    cidrs = cidrs_from_servicecidrs(json.loads(proc.stdout))
                    if cidrs:
                        cidr = cidrs[0]
            _host_facts[key] = cidr
        return _host_facts[key]

    def host_coredns_image(self) -> str:
        """The image of the host's own CoreDNS (present on its nodes), or "" (chart default)."""
        key = ("coredns", self.host.kubeconfig)
        if key not in _host_facts:
            proc = self.kubectl(
                "get", "deployment", "coredns", "-n", "kube-system",
                "-o", "jsonpath={.spec.template.spec.containers[0].image}",
            )  # fmt: skip
            _host_facts[key] = proc.stdout.strip() if proc.returncode == 0 else ""
        return _host_facts[key]

    def _write_pki(self, cidr: str) -> None:
        from .. import pki

        d = self.workdir / "pki"
        d.mkdir()
        ca = pki.CertificateAuthority(f"vcluster-{self.name}-ca")
        ca.pair.write(d, "ca")
        svc, ns = self.release, self.host_namespace
        ca.issue(
            "kube-apiserver",
            dns=(
                "localhost",
                svc,
                f"{svc}.{ns}",
                f"{svc}.{ns}.svc",
                f"{svc}.{ns}.svc.cluster.local",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=("127.0.0.1", _first_service_ip(cidr)),
            server=True,
        ).write(d, "apiserver")
        ca.issue(ADMIN_USER, orgs=("system:masters",), client=True).write(d, "admin")
        ca.issue("kube-apiserver-kubelet-client", client=True).write(d, "kubelet-client")
        sa_key, sa_pub = pki.service_account_key()
        (d / "sa.key").write_bytes(sa_key)
        (d / "sa.pub").write_bytes(sa_pub)

    def _create_namespace(self, values: Mapping[str, Any]) -> None:
        level = (values.get("isolation") or {}).get("podSecurityStandard") or "baseline"
        labels = {
            "app.kubernetes.io/managed-by": "pytest-vcluster",
            # The chart's isolation.podSecurityStandard, enforced by the host's admission.
            "pod-security.kubernetes.io/enforce": str(level),
            **self.labels,
        }
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.host_namespace, "labels": labels},
        }
        proc = self.kubectl("create", "-f", "-", input=json.dumps(body))
        if proc.returncode != 0:
            if "AlreadyExists" in proc.stderr:
                raise HostStartError(
                    f"host namespace {self.host_namespace} exists already: a vcluster named "
                    f"{self.name!r} is running on this host (or was left behind: "
                    "`pytest-vcluster reap`)"
                )
            if "forbidden" in proc.stderr.lower():
                raise HostStartError(
                    f"the host does not let this kubeconfig create namespaces (a vcluster "
                    f"needs its own, {self.host_namespace}): {proc.stderr.strip()[-1000:]}"
                )
            raise InClusterError(f"creating namespace {self.host_namespace}: {proc.stderr}")
        self._namespace_created = True

    def chart_values(
        self, images: Mapping[str, str], cidr: str, coredns_image: str = ""
    ) -> dict[str, Any]:
        """Values the plugin sets (images, service range, syncer flags); the user's win."""
        cp_repo, cp_tag = split_image(images["controlPlane"])
        sy_repo, sy_tag = split_image(images["syncer"])
        ours: dict[str, Any] = {
            "controlPlane": {
                "image": {"repository": cp_repo, "tag": cp_tag, "pullPolicy": "IfNotPresent"},
                "serviceCIDR": cidr,
            },
            "syncer": {
                "image": {"repository": sy_repo, "tag": sy_tag, "pullPolicy": "IfNotPresent"},
            },
        }
        coredns = images.get("coredns") or coredns_image
        if coredns:
            dns_repo, dns_tag = split_image(coredns)
            ours["coredns"] = {"image": {"repository": dns_repo, "tag": dns_tag}}
        if self.syncer_args:
            ours["syncer"]["extraArgs"] = list(self.syncer_args)
        return deep_merge(ours, self.values)

    def _install(self, values: Mapping[str, Any]) -> None:
        path = self.workdir / "values.yaml"
        path.write_text(yaml.safe_dump(dict(values), sort_keys=False))
        files = [
            f"--set-file=pki.{key}={self.workdir / 'pki' / name}"
            for key, name in PKI_VALUES.items()
        ]
        proc = self.helm(
            "install",
            self.release,
            str(self.chart),
            "--namespace",
            self.host_namespace,
            "--values",
            str(path),
            *files,
        )
        if proc.returncode != 0:
            raise InClusterError(
                f"helm install of vcluster {self.name!r} failed: {_helm_error(proc.stderr)}"
            )
        self._installed = True

    # -- the pod --------------------------------------------------------------------------------
    def _watch_pod(self, restart: bool = False) -> None:
        """``kubectl get -w`` of the vcluster pod into a file: each change within milliseconds,
        without a kubectl process per poll."""
        log = self.workdir / "pod-watch.json"
        argv = [
            str(self._tool("kubectl")), "--kubeconfig", self.host.kubeconfig,
            "get", "pods", "-n", self.host_namespace,
            f"--field-selector=metadata.name={self.pod_name}", "-w", "-o", "json",
        ]  # fmt: skip
        self._pod_watch = self.procs.start("pod-watch", argv, log)
        if not restart:
            self._pod_stream = _JsonStream(log)

    def _stop_pod_watch(self) -> None:
        if self._pod_watch is not None:
            self._pod_watch.kill()
            self._pod_watch.wait(2)
            self.procs.forget(self._pod_watch)
            self._pod_watch = None

    def _latest_pod(self) -> dict[str, Any] | None:
        if self._pod_stream is not None:
            for obj in self._pod_stream.read():
                if obj.get("kind") == "Pod":
                    self._pod = obj
        return self._pod

    def _check_pod(self) -> dict[str, Any] | None:
        """The latest pod; raises at once on a reason that never fixes itself."""
        pod = self._latest_pod()
        if pod is not None:
            problem = pod_problem(pod) or _image_problem(pod)
            if problem:
                raise InClusterError(
                    f"vcluster {self.name!r} cannot start: {problem}" + self._log_excerpt(pod)
                )
        if self._pod_watch is not None and not self._pod_watch.alive():
            # The watch ended (the host closed it, a hiccup): start it again, appending to the
            # same file; it re-sends the current pod first.
            self._pod_watch_restarts += 1
            if self._pod_watch_restarts > 20:
                tail = self._pod_watch.log_tail(10)
                raise InClusterError(f"kubectl get -w keeps exiting: {tail}")
            self.procs.forget(self._pod_watch)
            self._pod_watch = None
            self._watch_pod(restart=True)
        return pod

    def _wait_running(self, deadline: float, t0: float) -> None:
        stage = "scheduled"
        last = "no pod yet"
        while time.monotonic() < deadline:
            pod = self._check_pod()
            if pod is not None:
                status = pod.get("status") or {}
                conds = {c["type"]: c for c in status.get("conditions") or []}
                if stage == "scheduled" and conds.get("PodScheduled", {}).get("status") == "True":
                    self._stage("pod scheduled", t0)
                    stage = "running"
                if stage == "running" and status.get("phase") == "Running":
                    self._stage("containers running", t0)
                    return
                last = _pod_summary(pod)
            time.sleep(0.05)
        raise ReadinessTimeoutError(
            f"vcluster {self.name!r}: pod {self.host_namespace}/{self.pod_name} did not get "
            f"{stage!r} within {self.timeout:.0f}s; last: {last}"
        )

    def _log_excerpt(self, pod: Mapping[str, Any]) -> str:
        out = []
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("restartCount") or "terminated" in (cs.get("lastState") or {}):
                proc = self.kubectl(
                    "logs", "-n", self.host_namespace, self.pod_name, "-c", cs["name"],
                    "--previous", "--tail=15",
                )  # fmt: skip
                if proc.returncode == 0 and proc.stdout.strip():
                    out.append(f"\n--- {cs['name']} (previous run) ---\n{proc.stdout.rstrip()}")
        return "".join(out)

    def _read_kubeconfig(self) -> None:
        proc = self.kubectl(
            "get", "secret", f"vc-{self.release}", "-n", self.host_namespace,
            "-o", "jsonpath={.data.config}",
        )  # fmt: skip
        if proc.returncode != 0 or not proc.stdout:
            raise InClusterError(f"reading Secret vc-{self.release}: {proc.stderr.strip()}")
        self._kubeconfig = yaml.safe_load(base64.b64decode(proc.stdout))

    # -- port-forward ---------------------------------------------------------------------------
    def _start_port_forward(self, deadline: float) -> None:
        """The API server's and the syncer's health port on 127.0.0.1, one tunnel per
        connection (``pytest_vcluster.portforward``: a broken stream ends only itself)."""
        endpoint = HostEndpoint.from_kubeconfig(self.host.kubeconfig)
        self._forwards = [
            PortForward(endpoint, self.host_namespace, self.pod_name, 6443),
            PortForward(endpoint, self.host_namespace, self.pod_name, 8081),
        ]
        self.local_port = self._forwards[0].start()
        self.health_port = self._forwards[1].start()
        while True:  # the first tunnel says whether the host lets us forward at all
            try:
                self._forwards[0].check(timeout=max(1.0, deadline - time.monotonic()))
                break
            except PortForwardError as exc:
                if time.monotonic() > deadline or " 403" in str(exc):
                    raise InClusterError(str(exc)) from None
            except (OSError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise ReadinessTimeoutError(
                        f"port-forward to the vcluster pod: {exc}"
                    ) from None
            time.sleep(0.1)
        cfg = copy.deepcopy(self._kubeconfig)
        for cluster in cfg.get("clusters") or []:
            cluster["cluster"]["server"] = self.server
        kubeconfig.write(self.kubeconfig_path, cfg)

    @property
    def port_forward_stats(self) -> dict[str, Any]:
        return port_forward_stats(self._forwards)

    def _stop_port_forward(self) -> None:
        for forward in self._forwards:
            forward.stop()
        self._forwards = []

    def _detached_port_forward(self) -> None:
        """A kept vcluster outlives this process: ``kubectl port-forward`` takes over its
        ports (for a person's commands after the run, where one tunnel is fine)."""
        ports = (self.local_port, self.health_port)
        self._stop_port_forward()
        argv = [
            str(self._tool("kubectl")), "--kubeconfig", self.host.kubeconfig,
            "port-forward", "-n", self.host_namespace, f"pod/{self.pod_name}",
            f"{ports[0]}:6443", f"{ports[1]}:8081", "--address", "127.0.0.1",
        ]  # fmt: skip
        self.procs.start("port-forward", argv, self.workdir / "port-forward.log")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.local_port}"

    def rest(self) -> RestClient:
        d = self.workdir / "pki"
        creds = Credentials(self.server, d / "ca.crt", d / "admin.crt", d / "admin.key")
        return RestClient(creds, timeout=2.0)

    # -- readiness through the port-forward -----------------------------------------------------
    def _host_core(self) -> Any:
        """A ``CoreV1Api`` on the host (any kubeconfig auth: certificates, tokens, exec)."""
        if self._host_api is None:
            from kubernetes import client, config

            cfg = client.Configuration()
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=self.host.kubeconfig, client_configuration=cfg
            )
            cfg.retries = False  # probes retry every 0.1 s themselves; no urllib3 retries
            self._host_api = client.CoreV1Api(client.ApiClient(cfg))
        return self._host_api

    def _probe(self, target: str, path: str) -> tuple[int, str]:
        """GET through the host API server's pod proxy (``https:<pod>:6443``): a refused port
        is a 503 there, while through ``kubectl port-forward`` it ends the port-forward."""
        from kubernetes.client.exceptions import ApiException

        try:
            body = self._host_core().connect_get_namespaced_pod_proxy_with_path(
                target, self.host_namespace, path, _request_timeout=2
            )
        except ApiException as exc:
            return int(exc.status or 0), str(exc.body or exc.reason)[-300:]
        except Exception as exc:  # urllib3/connection errors: the host is slow, retry
            return 0, repr(exc)
        return 200, str(body)[-300:]

    def _wait_endpoints(self, deadline: float) -> None:
        """kube-apiserver ``/readyz``, then the syncer's ``/readyz``, polled every 0.1 s through
        the host's pod proxy (no waiting for the kubelet's 1 s probes and its Ready condition);
        then once through the port-forward."""
        api_ready = syncer_ready = False
        last: Any = None
        while time.monotonic() < deadline:
            self._check_pod()
            if not api_ready:
                status, last = self._probe(f"https:{self.pod_name}:6443", "readyz")
                api_ready = status == 200
                if api_ready:
                    self._stage("API server ready", self._t0)
            if api_ready and not syncer_ready:
                status, last = self._probe(f"http:{self.pod_name}:8081", "readyz")
                syncer_ready = status == 200
                if syncer_ready:
                    self._stage("syncer ready", self._t0)
            if syncer_ready:
                try:
                    status, body = self.rest().get("/readyz")
                except (OSError, http.client.HTTPException) as exc:
                    last = f"through the port-forward: {exc!r}"
                else:
                    if status == 200:
                        return
                    last = f"through the port-forward: {status} {body}"
            time.sleep(0.1)
        raise ReadinessTimeoutError(
            f"vcluster {self.name!r} not ready within {self.timeout:.0f}s (API server ready: "
            f"{api_ready}, syncer ready: {syncer_ready}); last: {last}; "
            f"pod: {_pod_summary(self._pod or {})}"
        )

    def _wait_default_service_account(self, deadline: float) -> None:
        """The ``default`` ServiceAccount (pods need it). Created here when missing: the
        controller-manager's ServiceAccount controller starts ~2 s after the API server is
        ready (it waits for /healthz, discovery and its informers); it adopts ours."""
        last: Any = None
        rest = self.rest()
        path = "/api/v1/namespaces/default/serviceaccounts"
        while time.monotonic() < deadline:
            try:
                status, body = rest.get(path + "/default")
                if status == 404:
                    status, body = rest.request("POST", path, {"metadata": {"name": "default"}})
                    status = 200 if status in (201, 409) else status
            except (OSError, http.client.HTTPException) as exc:
                last = exc
            else:
                if status == 200:
                    self._stage("default ServiceAccount", self._t0)
                    return
                last = (status, body)
            self._check_pod()
            time.sleep(0.1)
        raise ReadinessTimeoutError(
            f"vcluster {self.name!r}: no default ServiceAccount within {self.timeout:.0f}s "
            f"(through {self.server}); last: {last}"
        )

    def _wait_dns(self, deadline: float) -> None:
        """The vcluster's kube-dns Service (created by the syncer's bootstrap) has the ClusterIP
        of its host copy: pods created from now on get a working nameserver."""
        from syncer.translate.names import host_name

        host_svc = host_name("kube-dns", "kube-system", self.name)
        rest = self.rest()
        last: Any = "no kube-dns Service yet"
        while time.monotonic() < deadline:
            try:
                status, body = rest.get("/api/v1/namespaces/kube-system/services/kube-dns")
            except (OSError, http.client.HTTPException) as exc:
                status, body = 0, exc
            if status == 200:
                virtual_ip = body["spec"].get("clusterIP")
                proc = self.kubectl(
                    "get", "service", host_svc, "-n", self.host_namespace,
                    "-o", "jsonpath={.spec.clusterIP}",
                )  # fmt: skip
                host_ip = proc.stdout.strip() if proc.returncode == 0 else ""
                if host_ip and host_ip == virtual_ip:
                    self.dns_ip = host_ip
                    self._stage("DNS service", self._t0)
                    break
                last = f"virtual kube-dns {virtual_ip}, host copy {host_ip or proc.stderr.strip()}"
            else:
                last = f"kube-dns: {status} {body}"
            self._check_pod()
            time.sleep(0.1)
        else:
            raise ReadinessTimeoutError(
                f"vcluster {self.name!r}: its DNS Service (kube-system/kube-dns, created by the "
                f"syncer) was not synced within {self.timeout:.0f}s; last: {last}"
            )
        # CoreDNS answers: its host Service (which pods' lookups reach) has a ready endpoint,
        # read on the host (no wait for the status copy and the vcluster's endpoint controller).
        from kubernetes import client

        discovery = client.DiscoveryV1Api(self._host_core().api_client)
        selector = f"kubernetes.io/service-name={host_svc}"
        while time.monotonic() < deadline:
            try:
                slices = discovery.list_namespaced_endpoint_slice(
                    self.host_namespace, label_selector=selector, _request_timeout=2
                ).items
            except Exception as exc:  # a slow host: retry
                slices, last = [], f"kube-dns endpoints on the host: {exc!r}"[:300]
            if any(
                e.conditions is not None and e.conditions.ready
                for s in slices
                for e in s.endpoints or []
            ):
                self._stage("DNS ready", self._t0)
                return
            if slices:
                last = f"host kube-dns {host_svc}: no ready endpoint yet"
            self._check_pod()
            time.sleep(0.1)
        raise ReadinessTimeoutError(
            f"vcluster {self.name!r}: CoreDNS (kube-system/coredns in the vcluster, its pod "
            f"synced to {self.host_namespace}) not ready within {self.timeout:.0f}s; last: {last}"
            + self._coredns_summary()
        )

    def _coredns_summary(self) -> str:
        proc = self.kubectl(
            "get", "pods", "-n", self.host_namespace, "-o", "wide",
            "-l", "vc.pytest-vcluster.io/k8s-app=kube-dns",
        )  # fmt: skip
        return f"\nhost pods: {proc.stdout.strip() or proc.stderr.strip()}"

    # -- teardown -------------------------------------------------------------------------------
    def delete(self, wait: bool = True) -> None:
        """``helm uninstall``, then the namespace: marked for deletion (nothing new can be created
        in it), its pods removed at once (no test needs their graceful shutdown) and its claims
        waited for. The namespace object itself goes only after the namespace controller's fixed
        5 s delay: with ``wait=False`` this returns before that, and ``wait_deleted()`` waits
        (the plugin waits for all of a session's namespaces at its end, in parallel)."""
        t0 = self._delete_t0 = time.monotonic()
        self._stop_port_forward()
        self._pod_watch = None
        self.procs.stop(timeout=2)
        if self._installed:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                proc = self.helm("uninstall", self.release, "-n", self.host_namespace, timeout=60)
                if proc.returncode == 0 or "not found" in proc.stderr:
                    self._installed = False
                else:
                    self.progress(f"pytest-vcluster: helm uninstall {self.release}: {proc.stderr}")
        if self._namespace_created:
            try:
                self._empty_namespace(time.monotonic() + 60)
            except Exception as exc:  # the host went away: the namespace wait reports it
                self.progress(f"pytest-vcluster: deleting {self.host_namespace}: {exc}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.teardown_seconds = time.monotonic() - t0
        if wait:
            self.wait_deleted()
        elif not self._namespace_created:
            self._close_host_api()

    def _empty_namespace(self, end: float) -> None:
        from kubernetes.client.exceptions import ApiException

        core, ns = self._host_core(), self.host_namespace
        try:
            core.delete_namespace(ns, _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._namespace_created = False
            return
        core.delete_collection_namespaced_pod(ns, grace_period_seconds=0, _request_timeout=10)
        while time.monotonic() < end:
            pods = core.list_namespaced_pod(ns, limit=1, _request_timeout=10).items
            claims = core.list_namespaced_persistent_volume_claim(
                ns, limit=1, _request_timeout=10
            ).items
            if not pods and not claims:
                return
            if pods:  # e.g. re-created by the StatefulSet before the namespace was terminating
                core.delete_collection_namespaced_pod(
                    ns, grace_period_seconds=0, _request_timeout=10
                )
            time.sleep(0.1)

    def wait_deleted(self, timeout: float = 120) -> bool:
        """Wait until the host namespace is gone; whether it is. Sets ``deleted_seconds`` (from
        the start of ``delete()``)."""
        try:
            if self._namespace_created and self._wait_namespace_gone(time.monotonic() + timeout):
                self._namespace_created = False
            if not self._namespace_created:
                self.deleted_seconds = time.monotonic() - self._delete_t0
            return not self._namespace_created
        finally:
            self._close_host_api()

    def _wait_namespace_gone(self, end: float) -> bool:
        from kubernetes.client.exceptions import ApiException

        while time.monotonic() < end:
            try:
                self._host_core().read_namespace(self.host_namespace, _request_timeout=10)
            except ApiException as exc:
                if exc.status == 404:
                    return True
            except Exception:  # a slow or restarting host: retry until the deadline
                pass
            time.sleep(0.2)
        return False

    def _close_host_api(self) -> None:
        if self._host_api is not None:
            with contextlib.suppress(Exception):
                self._host_api.api_client.close()
            self._host_api = None

    def detach(self) -> dict[str, Any]:
        """Keep running after this process ends (the port-forward too); a record for ``reap``."""
        self._detached_port_forward()
        self._stop_pod_watch()
        children = self.procs.detach()
        self._installed = self._namespace_created = False  # no longer ours to delete
        return {
            "name": self.name,
            "host_namespace": self.host_namespace,
            "release": self.release,
            "kubeconfig": str(self.kubeconfig_path),
            "host_kubeconfig": self.host.kubeconfig,
            "workdir": str(self.workdir),
            "pids": {str(c.pid): proc_starttime(c.pid) for c in children if c.alive()},
        }

    def diagnostics(self) -> dict[str, str]:
        """Report sections for a failed test: host pods and events, container log tails."""
        ns = self.host_namespace
        out: dict[str, str] = {}
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            out["host pods"] = self.kubectl("get", "pods", "-n", ns, "-o", "wide").stdout
            out["host events"] = self.kubectl(
                "get", "events", "-n", ns, "--sort-by=.lastTimestamp"
            ).stdout[-6000:]
            for container in ("control-plane", "syncer"):
                out[f"{container} log (tail)"] = self.kubectl(
                    "logs", "-n", ns, self.pod_name, "-c", container, "--tail=60"
                ).stdout
            if self._forwards:
                out["port-forward"] = json.dumps(self.port_forward_stats)
            if self.local_port:
                out["virtual pods"] = self._virtual("get", "pods", "-A", "-o", "wide")
                out["virtual events"] = self._virtual("get", "events", "-A")[-6000:]
        return out

    def _virtual(self, *args: str) -> str:
        argv = [str(self._tool("kubectl")), "--kubeconfig", str(self.kubeconfig_path), *args]
        return self._run(argv, timeout=20).stdout

    def rss(self) -> dict[str, int]:
        """Memory of the vcluster pod's containers (bytes, RSS; working set when the runtime
        reports no RSS), read with ``crictl stats`` in the kind node; {} on other hosts."""
        if self.host.kind != "kind":
            return {}
        from ..docker import find_cli

        node = self.kubectl(
            "get", "pod", self.pod_name, "-n", self.host_namespace,
            "-o", "jsonpath={.spec.nodeName}",
        ).stdout.strip()  # fmt: skip
        if not node:
            return {}
        out = find_cli().run(
            [
                "exec", node, "crictl", "stats", "-o", "json",
                "--label", f"io.kubernetes.pod.namespace={self.host_namespace}",
                "--label", f"io.kubernetes.pod.name={self.pod_name}",
            ],
            check=False,
        )  # fmt: skip
        result: dict[str, int] = {}
        with contextlib.suppress(ValueError, KeyError):
            for st in json.loads(out.stdout.decode()).get("stats") or []:
                name = st["attributes"]["labels"]["io.kubernetes.container.name"]
                mem = st.get("memory") or {}
                value = (mem.get("rssBytes") or mem.get("workingSetBytes") or {}).get("value", 0)
                result[name] = int(value)
        return result


def _image_problem(pod: Mapping[str, Any]) -> str | None:
    """Waiting reasons ``kind.pod_problem`` does not list but that never fix themselves."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("ErrImageNeverPull", "InvalidImageName"):
            return f"{cs.get('name')}: {waiting['reason']}: {waiting.get('message', '')}"
    return None


def _helm_error(stderr: str) -> str:
    text = stderr.strip()
    # "Error: INSTALLATION FAILED: values don't meet the specifications of the schema(s) ..."
    text = re.sub(r"^Error: (INSTALLATION FAILED: )?", "", text)
    return text[-3000:] or "(no output)"


def _pod_summary(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    parts = [str(status.get("phase", "?"))]
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        which = next(iter(state), "?")
        reason = (state.get(which) or {}).get("reason", "")
        parts.append(
            f"{cs.get('name')}={which}{'/' + reason if reason else ''} ready={cs.get('ready')}"
        )
    return ", ".join(parts)
