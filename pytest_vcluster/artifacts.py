"""What a test's vclusters looked like when it failed, as files (``--vcluster-artifacts=DIR``).

One folder per test node id (safe under xdist: node ids are unique) and per vcluster in it:

- ``objects/<resource>.yaml``: every object of the vcluster a user could have made (all
  resources that can be listed; events, API registrations and ``system:`` RBAC left out);
- ``logs/<namespace>/<pod>/<container>.log`` (and ``.previous.log`` after a restart), read
  through the vcluster as ``kubectl logs`` does;
- ``events.txt``: the vcluster's and the host namespace's events, merged and sorted by time;
- ``name-map.txt``: each host object of the vcluster and the virtual object it copies;
- ``host-pods.yaml``; ``timings.json`` (the start stages); one ``.txt`` per diagnostics
  section the report shows (control-plane and syncer logs whole, host pods and events).

Collection never raises: what could not be read is written as such into ``errors.txt``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from .vcluster import VCluster

JSON = dict[str, Any]
#: Resources that are not a test's objects, or are written elsewhere (events).
SKIPPED = frozenset(
    {"events", "apiservices", "flowschemas", "prioritylevelconfigurations", "componentstatuses",
     "bindings", "tokenreviews", "selfsubjectreviews", "selfsubjectaccessreviews",
     "selfsubjectrulesreviews", "subjectaccessreviews", "localsubjectaccessreviews"}
)  # fmt: skip
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
OBJECT_ANNOTATIONS = ("vc.pytest-vcluster.io/object-namespace", "vc.pytest-vcluster.io/object-name")
KIND_ANNOTATION = "vc.pytest-vcluster.io/object-kind"


def folder_for(nodeid: str) -> str:
    """A file name for a test node id: readable, and unique (a short hash of the id)."""
    slug = _UNSAFE.sub("_", nodeid.replace("::", "__")).strip("_")[:120]
    return f"{slug}-{hashlib.sha256(nodeid.encode()).hexdigest()[:8]}"


def _read(api: Any, path: str) -> bytes:
    """GET ``path`` with ``api``'s credentials (its pool holds the client certificate)."""
    cfg = api.configuration
    headers = {"Accept": "application/json"}
    token = cfg.get_api_key_with_prefix("authorization")
    if token:
        headers["Authorization"] = token
    resp = api.rest_client.pool_manager.request(
        "GET", cfg.host + path, headers=headers, timeout=30, preload_content=True
    )
    if resp.status != 200:
        raise OSError(f"GET {path}: {resp.status} {resp.data[:500].decode(errors='replace')}")
    return bytes(resp.data)


def _get(api: Any, path: str) -> Any:
    return json.loads(_read(api, path))


def listable(api: Any) -> Iterator[tuple[str, str, bool]]:
    """(list path prefix, resource, namespaced) of every resource the server lists."""
    groups = [("/api/v1", "v1")]
    for group in _get(api, "/apis").get("groups") or []:
        version = (group.get("preferredVersion") or {}).get("groupVersion")
        if version:
            groups.append((f"/apis/{version}", version))
    for prefix, _ in groups:
        for res in _get(api, prefix).get("resources") or []:
            name = res.get("name", "")
            if "/" in name or "list" not in (res.get("verbs") or []) or name in SKIPPED:
                continue
            yield prefix, name, bool(res.get("namespaced"))


def _user_object(obj: JSON) -> bool:
    return not str((obj.get("metadata") or {}).get("name", "")).startswith("system:")


def _clean(obj: JSON) -> JSON:
    (obj.get("metadata") or {}).pop("managedFields", None)
    return obj


def _redacted(secret: JSON) -> JSON:
    """Artifacts get uploaded: a Secret keeps its keys, not its values."""
    for field in ("data", "stringData"):
        values = secret.get(field) or {}
        secret[field] = {k: f"<redacted: {len(str(v))} characters>" for k, v in values.items()}
    return secret


def _time(event: JSON) -> str:
    return str(
        event.get("eventTime")
        or event.get("lastTimestamp")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def event_lines(virtual: list[JSON], host: list[JSON]) -> list[str]:
    """Both sides' events, oldest first, one line each."""
    rows = []
    for side, events in (("virtual", virtual), ("host", host)):
        for e in events:
            ref = e.get("involvedObject") or e.get("regarding") or {}
            what = f"{ref.get('kind', '')}/{ref.get('namespace', '')}/{ref.get('name', '')}"
            note = str(e.get("message") or e.get("note") or "").replace("\n", " ")
            rows.append((_time(e), f"{_time(e)} {side:<7} {e.get('type', '')} {what} "
                                   f"{e.get('reason', '')}: {note}"))  # fmt: skip
    return [line for _, line in sorted(rows)]


def name_map(host_objects: list[JSON]) -> list[str]:
    """``Kind host-name <- namespace/name`` for every host object the syncer made."""
    out = []
    for obj in host_objects:
        ann = (obj.get("metadata") or {}).get("annotations") or {}
        ns, name = (ann.get(k) for k in OBJECT_ANNOTATIONS)
        if name:
            kind = ann.get(KIND_ANNOTATION) or obj.get("kind") or ""
            out.append(f"{kind} {obj['metadata']['name']} <- {ns}/{name}")
    return sorted(out)


class _Writer:
    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.errors: list[str] = []

    def text(self, rel: str, text: str) -> None:
        path = self.dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def attempt(self, what: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # an artifact is never worth a second failure
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}"[:2000])


def write(vc: VCluster, dest: Path) -> Path:
    """Everything above for ``vc`` into ``dest``; returns ``dest``."""
    out = _Writer(dest)
    dest.mkdir(parents=True, exist_ok=True)
    api = vc.api_client
    host = _host_client(vc)
    out.attempt("objects", lambda: _objects(api, out))
    out.attempt("logs", lambda: _logs(api, out))
    out.attempt("events", lambda: _events(api, host, vc.host_namespace, out))
    out.attempt("host objects", lambda: _host_objects(host, vc.host_namespace, out))
    out.attempt("timings", lambda: out.text("timings.json", json.dumps(_timings(vc), indent=1)))
    out.attempt("diagnostics", lambda: _sections(vc, out))
    if host is not None:
        host.close()
    if out.errors:
        out.text("errors.txt", "\n".join(out.errors) + "\n")
    return dest


def _host_client(vc: VCluster) -> Any:
    from kubernetes import config

    kubeconfig = getattr(vc.host, "kubeconfig", None)
    return config.new_client_from_config(config_file=str(kubeconfig)) if kubeconfig else None  # type: ignore[no-untyped-call]


def _objects(api: Any, out: _Writer) -> None:
    for prefix, resource, _ in listable(api):
        try:
            items = [_clean(o) for o in _get(api, f"{prefix}/{resource}").get("items") or []]
        except Exception as exc:
            out.errors.append(f"list {prefix}/{resource}: {exc}"[:500])
            continue
        items = [_redacted(o) if resource == "secrets" else o for o in items if _user_object(o)]
        if items:
            group = prefix.removeprefix("/apis/").removeprefix("/api/").replace("/", "_")
            out.text(f"objects/{resource}.{group}.yaml", yaml.safe_dump_all(items))


def _logs(api: Any, out: _Writer) -> None:
    for pod in _get(api, "/api/v1/pods").get("items") or []:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        statuses = (status.get("containerStatuses") or []) + (
            status.get("initContainerStatuses") or []
        )
        restarts = {c["name"]: c.get("restartCount", 0) for c in statuses}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/log"
            base = f"logs/{meta['namespace']}/{meta['name']}/{c['name']}"
            out.attempt(base, _LogCopy(api, out, f"{path}?container={c['name']}", base + ".log"))
            if restarts.get(c["name"]):
                previous = _LogCopy(
                    api, out, f"{path}?container={c['name']}&previous=true", base + ".previous.log"
                )
                out.attempt(base + " (previous)", previous)


class _LogCopy:
    """One container log, read through the vcluster (as ``kubectl logs``), into a file."""

    def __init__(self, api: Any, out: _Writer, path: str, rel: str) -> None:
        self.api, self.out, self.path, self.rel = api, out, path, rel

    def __call__(self) -> None:
        self.out.text(self.rel, _read(self.api, self.path).decode(errors="replace"))


def _events(api: Any, host: Any, host_namespace: str, out: _Writer) -> None:
    virtual = _get(api, "/api/v1/events").get("items") or []
    theirs: list[JSON] = []
    if host is not None:
        theirs = _get(host, f"/api/v1/namespaces/{host_namespace}/events").get("items") or []
    out.text("events.txt", "\n".join(event_lines(virtual, theirs)) + "\n")


def _host_objects(host: Any, host_namespace: str, out: _Writer) -> None:
    if host is None:
        return
    base = f"/api/v1/namespaces/{host_namespace}"
    pods = [_clean(p) for p in _get(host, f"{base}/pods").get("items") or []]
    out.text("host-pods.yaml", yaml.safe_dump_all(pods))
    objects = list(pods)
    for resource in ("services", "configmaps", "secrets", "endpoints", "persistentvolumeclaims"):
        objects += _get(host, f"{base}/{resource}").get("items") or []
    out.text("name-map.txt", "\n".join(name_map(objects)) + "\n")


def _timings(vc: VCluster) -> JSON:
    impl = vc._impl
    stages = getattr(impl, "timings", None)
    return {"ready_seconds": getattr(impl, "ready_seconds", None), "stages": stages}


def _sections(vc: VCluster, out: _Writer) -> None:
    for title, text in vc.diagnostics(log_lines=0).items():
        out.text(f"{_UNSAFE.sub('-', title).strip('-')}.txt", text)
