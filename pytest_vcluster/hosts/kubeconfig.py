"""Any cluster you have a kubeconfig for, as a host for in-cluster vclusters (Helm releases).

Nothing is started or stopped here: the host is checked (reachable, its version, the right to
create namespaces) and one self-contained kubeconfig for the chosen context is written under
``<cache>/kubeconfig/<context>/`` for kubectl, helm and the ``kubernetes`` client.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import HostStartError, VClusterError
from ..versions import K8sVersion, parse_k8s_version
from .base import HostContext, Provides, RuntimeOptions

if TYPE_CHECKING:
    from ..kept import KeptRecord
    from ..settings import Settings
    from ..spec import VClusterSpec
    from .incluster import InClusterVCluster
    from .tools import Tools

PROVIDES = Provides(
    tools=("kubectl", "helm"),
    chart_values=True,
    default_prewarm=0,  # someone else's cluster: start nothing nobody asked for
    deferred_namespace_wait=True,
)


class KubeconfigError(VClusterError):
    """The kubeconfig (or its context) cannot be used as a host."""


def default_kubeconfig() -> str:
    return os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path} is not YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KubeconfigError(f"{path} holds a {type(data).__name__}, not a kubeconfig mapping")
    return data


# Paths inside a kubeconfig are relative to the file that holds them; inline them so the
# flattened copy works from anywhere (and inside helm's and kubectl's own processes).
_FILE_KEYS = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
}


def _inline(entry: Mapping[str, Any], base: Path) -> dict[str, Any]:
    out = dict(entry)
    for key, data_key in _FILE_KEYS.items():
        ref = out.pop(key, None)
        if ref and not out.get(data_key):
            path = (base / str(ref)).expanduser()
            try:
                out[data_key] = base64.b64encode(path.read_bytes()).decode()
            except OSError as exc:
                raise KubeconfigError(f"{key} {path}: {exc.strerror}") from None
    if out.get("tokenFile") and not out.get("token"):
        path = (base / str(out.pop("tokenFile"))).expanduser()
        try:
            out["token"] = path.read_text().strip()
        except OSError as exc:
            raise KubeconfigError(f"tokenFile {path}: {exc.strerror}") from None
    return out


def flatten(paths: list[Path], context: str | None) -> tuple[dict[str, Any], str]:
    """One self-contained kubeconfig holding only ``context`` (default: the current one).

    ``paths`` merge like ``KUBECONFIG=a:b``: the first file that names an entry wins.
    """
    entries: dict[str, dict[str, dict[str, Any]]] = {"clusters": {}, "users": {}, "contexts": {}}
    current = ""
    found = False
    for path in paths:
        if not path.exists():
            continue
        found = True
        data = _load(path)
        current = current or str(data.get("current-context") or "")
        for section in entries:
            for item in data.get(section) or []:
                if isinstance(item, dict) and "name" in item:
                    body = item.get(section[:-1]) or {}
                    if section != "contexts":
                        body = _inline(body, path.parent)
                    entries[section].setdefault(str(item["name"]), body)
    if not found:
        raise KubeconfigError(f"no kubeconfig at {':'.join(map(str, paths))}")
    name = context or current
    if not name:
        raise KubeconfigError("it has no current-context: name one with --vcluster-context")
    ctx = entries["contexts"].get(name)
    if ctx is None:
        known = ", ".join(sorted(entries["contexts"])) or "none"
        raise KubeconfigError(f"no context {name!r} in it (contexts: {known})")
    cluster = entries["clusters"].get(str(ctx.get("cluster")))
    if cluster is None or not cluster.get("server"):
        raise KubeconfigError(f"context {name!r} names cluster {ctx.get('cluster')!r}, not in it")
    user = entries["users"].get(str(ctx.get("user")), {})
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [
            {
                "name": name,
                "context": {
                    "cluster": name,
                    "user": name,
                    **({"namespace": ctx["namespace"]} if ctx.get("namespace") else {}),
                },
            }
        ],
        "current-context": name,
    }
    return config, name


def split_paths(value: str) -> list[Path]:
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p]


@dataclass
class KubeconfigHost:
    """``check()`` once, then ``info()`` for the vclusters (Helm releases) made on it."""

    kubeconfig: str
    context: str | None
    cache_dir: Path
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self.config, self.context_name = flatten(split_paths(self.kubeconfig), self.context)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.context_name)[:100] or "default"
        self.workdir = self.cache_dir / "kubeconfig" / safe
        self.version = ""

    @property
    def server(self) -> str:
        return str(self.config["clusters"][0]["cluster"]["server"])

    @property
    def path(self) -> Path:
        return self.workdir / "kubeconfig"

    def write(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".kubeconfig.{os.getpid()}")
        tmp.write_text(yaml.safe_dump(self.config, sort_keys=False))
        tmp.chmod(0o600)
        tmp.replace(self.path)  # atomic: xdist workers write the same file
        return self.path

    def check(self) -> None:
        """Reachable, and allowed to make what a vcluster needs: a clear error otherwise."""
        from kubernetes import client, config

        self.write()
        try:
            api = config.new_client_from_config(config_file=str(self.path))  # type: ignore[no-untyped-call]
        except Exception as exc:  # the client's own errors name the field at fault
            raise KubeconfigError(f"context {self.context_name!r}: {exc}") from None
        try:
            try:
                info = client.VersionApi(api).get_code(_request_timeout=self.timeout)
            except Exception as exc:
                raise HostStartError(
                    f"cannot reach the API server of context {self.context_name!r} at "
                    f"{self.server}: {_short(exc)}"
                ) from None
            self.version = str(info.git_version).lstrip("v").split("+")[0].split("-")[0]
            denied = []
            for verb, resource in (("create", "namespaces"), ("delete", "namespaces")):
                review = client.V1SelfSubjectAccessReview(
                    spec=client.V1SelfSubjectAccessReviewSpec(
                        resource_attributes=client.V1ResourceAttributes(
                            verb=verb, resource=resource
                        )
                    )
                )
                try:
                    result = client.AuthorizationV1Api(api).create_self_subject_access_review(
                        review, _request_timeout=self.timeout
                    )
                except Exception as exc:
                    raise HostStartError(
                        f"context {self.context_name!r}: access review failed: {_short(exc)}"
                    ) from None
                if result.status is None or not result.status.allowed:
                    denied.append(f"{verb} {resource}")
            if denied:
                raise HostStartError(
                    f"context {self.context_name!r} may not {' or '.join(denied)}; each "
                    "vcluster lives in its own host namespace, so the host's user needs that right"
                )
        finally:
            api.close()

    def info(self, default_k8s: K8sVersion | None = None) -> KubeconfigHostInfo:
        """The host as its vclusters see it; their Kubernetes version is the host's when we
        have a control-plane image of it, else ``default_k8s`` (the run's)."""
        if not self.version:
            self.check()
        try:
            k8s = str(parse_k8s_version(self.version))
        except VClusterError:  # a version we build no images of
            k8s = str(default_k8s or parse_k8s_version(None))
        return KubeconfigHostInfo(
            context=self.context_name,
            k8s_version=k8s,
            host_version=self.version,
            server=self.server,
            kubeconfig=str(self.path),
            workdir_path=str(self.workdir),
            cache_dir=str(self.cache_dir),
        )


@dataclass(frozen=True)
class KubeconfigHostInfo:
    context: str
    k8s_version: str  # of its vclusters by default
    host_version: str
    server: str
    kubeconfig: str  # the flattened copy under workdir_path
    workdir_path: str
    cache_dir: str

    @property
    def kind(self) -> str:
        return "kubeconfig"

    @property
    def provides(self) -> Provides:
        return PROVIDES

    @property
    def workdir(self) -> Path:
        return Path(self.workdir_path)

    def tools(self) -> Tools:
        from .tools import Tools

        return Tools({}, parse_k8s_version(self.k8s_version), Path(self.cache_dir))

    def new_vcluster(self, spec: VClusterSpec, options: RuntimeOptions) -> InClusterVCluster:
        from .incluster import new_release

        return new_release(self, spec, options)

    def needed_after_run(self, kept: list[KeptRecord]) -> bool:
        return False  # nothing of ours to stop: the cluster is someone else's

    def images(self, k8s_version: str, progress: Any) -> dict[str, str]:
        """Named ones (a registry the cluster pulls from), else the newest local build (a
        cluster that sees the local Docker, as a kind cluster used as a kubeconfig host)."""
        from .incluster.chart import resolve_images

        return resolve_images(k8s_version)

    def load_images(self, images: list[str], progress: Any) -> float:
        return 0.0  # the cluster pulls them from its registry

    def container_rss(self, namespace: str, pod: str) -> dict[str, int]:
        return {}  # no access to its nodes

    def node_address(self) -> str:
        return ""  # a shared cluster's nodes: not exposed, and rarely routable from a CI runner


class KubeconfigHostType:
    name = "kubeconfig"
    provides = PROVIDES
    unusable = "is not usable"
    options = ("vcluster-kubeconfig", "vcluster-context")

    def check_settings(self, settings: Settings) -> None:
        """A missing file or context (reachability is checked when a test needs the host)."""
        try:
            flatten(split_paths(settings.kubeconfig), settings.context)
        except KubeconfigError as exc:
            raise KubeconfigError(
                f"{settings.kubeconfig!r}: {exc}; accepted: a readable kubeconfig with that "
                "context (--vcluster-context, default its current-context)"
            ) from None

    def describe(self, settings: Settings) -> str:
        return f"kubeconfig ({settings.kubeconfig}, context {settings.context or 'current'})"

    @contextmanager
    def open(self, ctx: HostContext) -> Iterator[KubeconfigHostInfo]:
        s = ctx.settings
        host = KubeconfigHost(s.kubeconfig, s.context, s.cache_dir, timeout=min(s.timeout, 15))
        ctx.progress(f"pytest-vcluster: checking host context {host.context_name!r}")
        yield host.info(s.k8s)


HOST_TYPE = KubeconfigHostType()


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", "") or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
