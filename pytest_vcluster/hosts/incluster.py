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
with the reason) → pod Ready (kube-apiserver ``/readyz`` and syncer ``/readyz`` probes) →
port-forward → ``default`` ServiceAccount.
"""

from __future__ import annotations

import base64
import contextlib
import copy
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
from ..errors import HostStartError, ReadinessTimeoutError, VClusterError
from ..naming import default_cache_dir, host_namespace_for, validate_name
from ..procs import Child, ProcessGroup, proc_starttime
from ..rest import Credentials, RestClient
from ..servicecidr import cidrs_from_servicecidrs
from ..versions import parse_k8s_version
from .base import HostInfo
from .controlplane import ADMIN_USER, Progress, _first_service_ip, _quiet
from .kind import pod_problem

CHART_DIR = Path(__file__).resolve().parents[2] / "chart"
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
}

_loaded: set[tuple[str, str]] = set()  # (kind cluster, image) loaded by this process
_load_lock = threading.Lock()


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
        self.port_forward: Child | None = None
        self.local_port = 0
        self.ready_seconds = 0.0
        self.teardown_seconds = 0.0
        self.timings: dict[str, float] = {}
        self._installed = False
        self._namespace_created = False
        self._t0 = 0.0
        self._kubeconfig: dict[str, Any] = {}

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
        self._stage("images and certificates", t0)
        self._create_namespace()
        self._install(images, cidr)
        self._stage("helm install", t0)
        self._wait_pod(deadline, t0)
        self._read_kubeconfig()
        self._start_port_forward(deadline)
        self._stage("port-forward", t0)
        self._wait_default_service_account(deadline)
        self.ready_seconds = time.monotonic() - t0
        self.progress(f"pytest-vcluster: vcluster {self.name} ready in {self.ready_seconds:.2f}s")

    def _load_images(self, images: list[str]) -> None:
        if self.host.kind != "kind":
            return  # another host pulls them from its registry
        with _load_lock:
            todo = [i for i in images if (self.kind_cluster, i) not in _loaded]
            if not todo:
                return
            kind = self._tool("kind")
            argv = [str(kind), "load", "docker-image", "--name", self.kind_cluster, *todo]
            proc = self._run(argv, timeout=600)
            if proc.returncode != 0:
                raise InClusterError(
                    f"kind load docker-image {' '.join(todo)} failed: "
                    f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
                )
            _loaded.update((self.kind_cluster, i) for i in todo)

    def service_cidr(self) -> str:
        """The host's service range (synced Services keep their host ClusterIPs)."""
        proc = self.kubectl("get", "servicecidrs.networking.k8s.io", "-o", "json")
        if proc.returncode == 0:
            with contextlib.suppress(ValueError):
                cidrs = cidrs_from_servicecidrs(json.loads(proc.stdout))
                if cidrs:
                    return cidrs[0]
        return DEFAULT_SERVICE_CIDR

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
        sa_key, sa_pub = pki.service_account_key()
        (d / "sa.key").write_bytes(sa_key)
        (d / "sa.pub").write_bytes(sa_pub)

    def _create_namespace(self) -> None:
        labels = {"app.kubernetes.io/managed-by": "pytest-vcluster", **self.labels}
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
            raise InClusterError(f"creating namespace {self.host_namespace}: {proc.stderr}")
        self._namespace_created = True

    def chart_values(self, images: Mapping[str, str], cidr: str) -> dict[str, Any]:
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
        if self.syncer_args:
            ours["syncer"]["extraArgs"] = list(self.syncer_args)
        return deep_merge(ours, self.values)

    def _install(self, images: Mapping[str, str], cidr: str) -> None:
        values = self.workdir / "values.yaml"
        values.write_text(yaml.safe_dump(self.chart_values(images, cidr), sort_keys=False))
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
            str(values),
            *files,
        )
        if proc.returncode != 0:
            raise InClusterError(
                f"helm install of vcluster {self.name!r} failed: {_helm_error(proc.stderr)}"
            )
        self._installed = True

    def _wait_pod(self, deadline: float, t0: float) -> None:
        stage = "scheduled"
        last = "no pod yet"
        while time.monotonic() < deadline:
            proc = self.kubectl(
                "get", "pod", self.pod_name, "-n", self.host_namespace, "-o", "json"
            )
            if proc.returncode == 0:
                pod = json.loads(proc.stdout)
                problem = pod_problem(pod) or _image_problem(pod)
                if problem:
                    raise InClusterError(
                        f"vcluster {self.name!r} cannot start: {problem}" + self._log_excerpt(pod)
                    )
                status = pod.get("status") or {}
                conds = {c["type"]: c for c in status.get("conditions") or []}
                if stage == "scheduled" and conds.get("PodScheduled", {}).get("status") == "True":
                    self._stage("pod scheduled", t0)
                    stage = "running"
                if (
                    stage == "running"
                    and status.get("containerStatuses")
                    and all(
                        "running" in (cs.get("state") or {}) for cs in status["containerStatuses"]
                    )
                ):
                    self._stage("containers running", t0)
                    stage = "ready"
                if stage == "ready" and conds.get("Ready", {}).get("status") == "True":
                    self._stage("pod Ready", t0)
                    return
                last = _pod_summary(pod)
            else:
                last = proc.stderr.strip()
            time.sleep(0.25)
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

    def _start_port_forward(self, deadline: float) -> None:
        log = self.workdir / "port-forward.log"
        argv = [
            str(self._tool("kubectl")),
            "--kubeconfig",
            self.host.kubeconfig,
            "port-forward",
            "-n",
            self.host_namespace,
            f"pod/{self.pod_name}",
            ":6443",
            "--address",
            "127.0.0.1",
        ]
        self.port_forward = self.procs.start("port-forward", argv, log)
        while time.monotonic() < deadline:
            m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) -> 6443", log.read_text())
            if m:
                self.local_port = int(m.group(1))
                break
            if not self.port_forward.alive():
                raise InClusterError(f"kubectl port-forward exited: {log.read_text()[-1000:]}")
            time.sleep(0.05)
        else:
            raise ReadinessTimeoutError(f"kubectl port-forward did not start: {log.read_text()}")
        cfg = copy.deepcopy(self._kubeconfig)
        for cluster in cfg.get("clusters") or []:
            cluster["cluster"]["server"] = self.server
        kubeconfig.write(self.kubeconfig_path, cfg)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.local_port}"

    def rest(self) -> RestClient:
        d = self.workdir / "pki"
        return RestClient(Credentials(self.server, d / "ca.crt", d / "admin.crt", d / "admin.key"))

    def _wait_default_service_account(self, deadline: float) -> None:
        last: Any = None
        while time.monotonic() < deadline:
            try:
                status, body = self.rest().get("/api/v1/namespaces/default/serviceaccounts/default")
            except OSError as exc:
                last = exc
            else:
                if status == 200:
                    self._stage("default ServiceAccount", self._t0)
                    return
                last = (status, body)
            time.sleep(0.1)
        raise ReadinessTimeoutError(
            f"vcluster {self.name!r}: no default ServiceAccount within {self.timeout:.0f}s "
            f"(through {self.server}); last: {last}"
        )

    def delete(self) -> None:
        """Stop the port-forward, ``helm uninstall``, delete the namespace, wait until gone."""
        t0 = time.monotonic()
        self.procs.stop(timeout=2)
        if self._installed:
            proc = self.helm("uninstall", self.release, "-n", self.host_namespace, timeout=60)
            if proc.returncode != 0 and "not found" not in proc.stderr:
                self.progress(f"pytest-vcluster: helm uninstall {self.release}: {proc.stderr}")
            self._installed = False
        if self._namespace_created:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self.kubectl("delete", "namespace", self.host_namespace, "--wait=false")
                end = time.monotonic() + 120
                while time.monotonic() < end:
                    got = self.kubectl("get", "namespace", self.host_namespace, "-o", "name")
                    if got.returncode != 0 and "NotFound" in got.stderr:
                        self._namespace_created = False
                        break
                    time.sleep(0.25)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.teardown_seconds = time.monotonic() - t0

    def detach(self) -> dict[str, Any]:
        """Keep running after this process ends (the port-forward too); a record for ``reap``."""
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
            if self.local_port:
                out["virtual pods"] = self._virtual("get", "pods", "-A", "-o", "wide")
                out["virtual events"] = self._virtual("get", "events", "-A")[-6000:]
        return out

    def _virtual(self, *args: str) -> str:
        argv = [str(self._tool("kubectl")), "--kubeconfig", str(self.kubeconfig_path), *args]
        return self._run(argv, timeout=20).stdout

    def rss(self) -> dict[str, int]:
        return {}  # no metrics-server on the kind host (yet)


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
