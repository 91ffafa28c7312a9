"""The ``VCluster`` handle: a virtual cluster as a plain context manager (no pytest needed).

with VCluster(host_info, name="demo") as vc:
    core = kubernetes.client.CoreV1Api(vc.api_client)
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from .errors import VClusterError
from .hosts.base import Host, Progress, Runtime, RuntimeOptions, quiet
from .kept import KeptRecord
from .spec import VClusterSpec, build_spec
from .wait import NotYet, poll

Manifest = Mapping[str, Any] | str | Path | Iterable[Mapping[str, Any]]


class VCluster:
    def __init__(
        self,
        host: Host,
        name: str,
        *,
        sync: Iterable[str] = (),
        binaries: Mapping[str, Path] | None = None,
        k8s_version: str | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        progress: Progress = quiet,
        detachable: bool = False,
        values: Mapping[str, Any] | None = None,
        images: Mapping[str, str] | None = None,
        cache_dir: Path | None = None,
        port_forward: bool = False,
    ) -> None:
        """``host`` is what a host's ``info()`` returns (``LocalHost(...).info()``). ``name``,
        ``k8s_version``, ``values`` and ``sync`` are checked as the marker's are (a
        ``SpecError`` names what is wrong, or what this host cannot honour: chart ``values``
        and ``images`` (``{"controlPlane": ref, "syncer": ref}``) need a host that runs the
        Helm chart). ``cache_dir`` is where ``kubectl()``/``helm()`` find (or fetch) their
        binaries. ``port_forward``: reach a chart host's vcluster through a port-forward even
        where a node port of the host would do (kind on Linux)."""
        spec = build_spec(
            {"name": name, "k8s_version": k8s_version, "values": values, "sync": list(sync)},
            "VCluster",
        )
        options = RuntimeOptions(
            labels=dict(labels or {}),
            timeout=timeout,
            progress=progress,
            detachable=detachable,
            binaries=dict(binaries or {}),
            images=dict(images or {}),
            node_port=not port_forward,
        )
        self._setup(host, spec, options, cache_dir)

    @classmethod
    def from_spec(
        cls, host: Host, spec: VClusterSpec, options: RuntimeOptions, cache_dir: Path | None = None
    ) -> VCluster:
        """A handle for a spec already built (and named): the plugin's way in."""
        vc = cls.__new__(cls)
        vc._setup(host, spec, options, cache_dir)
        return vc

    def _setup(
        self, host: Host, spec: VClusterSpec, options: RuntimeOptions, cache_dir: Path | None
    ) -> None:
        assert spec.name is not None
        self.host = host
        self.spec = spec
        self.name = spec.name
        self.cache_dir = cache_dir
        asked = spec.k8s_version  # as asked for: "1.36" stays "1.36" (its patch is the default)
        self.k8s_version = (
            (str(asked) if asked.exact else asked.minor_str) if asked else host.k8s_version
        )
        self._tools = host.tools().with_paths(options.binaries)
        if cache_dir is not None:
            self._tools.cache_dir = cache_dir
        self._impl: Runtime = host.new_vcluster(spec, options)
        self._api_client: Any = None
        self._dynamic: Any = None
        self.created = False

    # -- lifecycle ----------------------------------------------------------------------------
    def create(self) -> VCluster:
        """Create and wait until ready (control plane, default ServiceAccount, syncer)."""
        self._impl.start()
        self.created = True
        return self

    def wait_ready(self) -> VCluster:
        return self if self.created else self.create()

    def delete(self, wait: bool = True) -> None:
        """Remove it. On kind and kubeconfig hosts, ``wait=False`` returns once the release,
        the pods and the claims are gone and the host namespace is terminating (the namespace
        controller removes it 5 s later); ``wait_deleted()`` waits for that."""
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None
        self._impl.delete(wait=wait)
        self.created = False

    def wait_deleted(self, timeout: float = 120) -> bool:
        """Whether the host namespace is gone (waits up to ``timeout`` seconds)."""
        return self._impl.wait_deleted(timeout)

    def lift_cpu_budget(self) -> None:
        """Lift the CPU limit a pooled vcluster starts under (also while it is starting)."""
        self._impl.lift_cpu_budget()

    def detach(self) -> KeptRecord:
        """Leave it running after this process ends (keep policies); returns its record."""
        return self._impl.detach()

    def __enter__(self) -> VCluster:
        return self.create()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.delete()

    # -- connection ---------------------------------------------------------------------------
    @property
    def host_namespace(self) -> str:
        return self._impl.host_namespace

    @property
    def kubeconfig_path(self) -> Path:
        return self._impl.kubeconfig_path

    @property
    def ready_seconds(self) -> float:
        return self._impl.ready_seconds

    @property
    def teardown_seconds(self) -> float:
        return self._impl.teardown_seconds

    @property
    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for the virtual cluster (cluster-admin)."""
        if self._api_client is None:
            from kubernetes import config

            self._api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(self.kubeconfig_path)
            )
        return self._api_client

    def host_api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for the host (cluster-admin)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.host.kubeconfig)  # type: ignore[no-untyped-call]

    def _dyn(self) -> Any:
        if self._dynamic is None:
            from kubernetes import dynamic

            self._dynamic = dynamic.DynamicClient(self.api_client)  # type: ignore[no-untyped-call]
        return self._dynamic

    # -- helpers ------------------------------------------------------------------------------
    def host_name(self, obj: Mapping[str, Any] | Any, namespace: str | None = None) -> str:
        """The name the syncer gives ``obj`` (a dict, a kubernetes model, or a name) on the host."""
        from syncer.translate.names import host_name

        if isinstance(obj, str):
            return host_name(obj, namespace or "default", self.name)
        meta = obj["metadata"] if isinstance(obj, Mapping) else obj.metadata
        if isinstance(meta, Mapping):
            name, ns = str(meta["name"]), meta.get("namespace")
        else:
            name, ns = str(meta.name), meta.namespace
        return host_name(name, namespace or ns or "default", self.name)

    def apply(self, manifest: Manifest, namespace: str = "default") -> list[Any]:
        """Server-side apply of a dict, a list of dicts, YAML text or a YAML file path."""
        docs = _documents(manifest)
        applied = []
        for doc in docs:
            resource = self._dyn().resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            ns = doc.get("metadata", {}).get("namespace") or namespace
            kwargs = {"namespace": ns} if resource.namespaced else {}
            applied.append(
                resource.server_side_apply(
                    body=doc, field_manager="pytest-vcluster", force_conflicts=True, **kwargs
                )
            )
        return applied

    def wait_for(
        self,
        kind: str,
        name: str,
        condition: str | Callable[[Any], bool] = "Ready",
        timeout: float = 60.0,
        namespace: str = "default",
        api_version: str = "v1",
    ) -> Any:
        """Poll until the object's ``condition`` is True (or the callable says so)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        resource = self._dyn().resources.get(api_version=api_version, kind=kind)
        kwargs = {"namespace": namespace} if resource.namespaced else {}

        def check() -> Any:
            obj = resource.get(name=name, **kwargs)  # ApiException: not created yet
            if not _satisfied(obj, condition):
                raise NotYet(_summary(obj))
            return obj

        return poll(
            f"{kind} {namespace}/{name} in vcluster {self.name} to reach {condition!r} "
            f"(within {timeout:.0f}s)",
            check,
            time.monotonic() + timeout,
            interval=0.2,
            retry=(ApiException, HTTPError, OSError),
            timeout_error=VClusterError,
        )

    def logs(self, pod: str, namespace: str = "default", container: str | None = None) -> str:
        """Logs of a virtual pod, through the vcluster's own API (its fake node's kubelet API is
        the syncer, which reads the host pod's); on the local host, whose pods are simulated,
        the vcluster's clear error is raised."""
        from kubernetes.client import CoreV1Api
        from kubernetes.client.exceptions import ApiException

        kw: dict[str, Any] = {"container": container} if container else {}
        try:
            return str(
                CoreV1Api(self.api_client).read_namespaced_pod_log(
                    pod, namespace, _request_timeout=60, **kw
                )
            )
        except ApiException as exc:
            raise VClusterError(f"logs of pod {namespace}/{pod}: {_api_message(exc)}") from None

    def snapshot(self, timeout: float = 60.0) -> dict[str, Any]:
        """Remember the vcluster's state now: ``reset()`` returns to it. The session
        fixtures take one as the vcluster becomes ready."""
        from .reset import ask

        return ask(self.api_client, "snapshot", self.name, timeout)

    def reset(self, timeout: float = 60.0) -> dict[str, Any]:
        """Return to the last ``snapshot()``: every object made since is gone — in the vcluster
        (namespaces and their contents, cluster-scoped objects, CRDs and their instances,
        webhooks) and their host copies — and what was changed or deleted is as it was (live
        state aside: pods, nodes, leases, events, endpoints). Returns the syncer's figures
        (``deleted``, ``restored``, ``host_deleted``, ``seconds``); ``ResetError`` when it
        cannot (no snapshot was taken)."""
        from .reset import ask

        return ask(self.api_client, "reset", self.name, timeout)

    def diagnostics(self, log_lines: int = 60) -> dict[str, str]:
        return self._impl.diagnostics(log_lines)

    # -- command-line tools on this vcluster ------------------------------------------------------
    def tool(self, name: str) -> Path:
        """Path of ``kubectl``, ``helm``, ... (the plugin's cache, PATH, download or Go build)."""
        return self._tools.path(name)

    def run(
        self,
        tool: str,
        *args: str,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``tool`` with ``KUBECONFIG`` set to this vcluster; on failure (``check``) raise a
        ``VClusterError`` holding the command and its stderr."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig_path)}
        argv = [str(self.tool(tool)), *args]
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=timeout, input=input, check=False
        )
        if check and proc.returncode != 0:
            raise VClusterError(
                f"{tool} {' '.join(args)} (vcluster {self.name}) exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        return proc

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``kubectl`` against this vcluster, e.g. ``vc.kubectl("get", "pods", "-A")``."""
        return self.run("kubectl", *args, **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``helm`` against this vcluster, e.g. ``vc.helm("install", "demo", "./chart")``."""
        return self.run("helm", *args, **kw)


def _api_message(exc: Any) -> str:
    """The message of an API error (its Status), else what the client said."""
    import json

    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"


def _documents(manifest: Manifest) -> list[dict[str, Any]]:
    if isinstance(manifest, Path) or (
        isinstance(manifest, str)
        and "\n" not in manifest
        and manifest.endswith((".yaml", ".yml", ".json"))
    ):
        manifest = Path(manifest).read_text()
    if isinstance(manifest, str):
        return [d for d in yaml.safe_load_all(manifest) if d]
    if isinstance(manifest, Mapping):
        return [dict(manifest)]
    return [dict(d) for d in manifest]


def _satisfied(obj: Any, condition: str | Callable[[Any], bool]) -> bool:
    if callable(condition):
        return bool(condition(obj))
    status = obj.to_dict().get("status") or {}
    if status.get("phase") == condition:
        return True
    return any(
        c.get("type") == condition and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _summary(obj: Any) -> str:
    if obj is None or isinstance(obj, Exception):
        return repr(obj)
    status = obj.to_dict().get("status") or {}
    return str({k: status.get(k) for k in ("phase", "conditions") if k in status})[:500]
