"""Pods: virtual -> host (with their ConfigMaps, Secrets and a service-account token), status back.

The virtual cluster has no scheduler and no kubelet: the host schedules and runs the pod, the
syncer binds the virtual pod to a fake node of the same name and copies the status back.
Deletion flows both ways: a deleted virtual pod deletes its host pod (then ends in a terminal
phase and is finalized); a host pod that disappears takes its virtual pod along so the owning
controller recreates it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.controller import Engine
from ..core.workqueue import FOLLOW_UP
from ..kube import JSON, ApiError, timestamp
from ..translate.metadata import virtual_ref
from ..translate.names import host_name
from ..translate.pod_plan import (
    metadata_patch,
    new_ephemeral_containers,
    plan,
    resize_patch,
    spec_patch,
)
from ..translate.pod_refs import containers
from ..translate.pod_security import pod_violations
from ..translate.pod_status import bound_status, terminal_status, virtual_status
from ..translate.pods import PodContext, translate_pod
from ..translate.service_env import namespace_service_env
from .generic import DownSync, status_differs
from .tokens import Tokens, token_secret_name

log = logging.getLogger(__name__)
DENIED_REASON = "SyncDenied"


def referenced(pod: JSON) -> tuple[set[str], set[str], set[str]]:
    """(configmaps, secrets, pvcs) a virtual pod refers to by name."""
    spec = pod.get("spec") or {}
    cms: set[str] = set()
    secrets: set[str] = {s["name"] for s in spec.get("imagePullSecrets") or [] if s.get("name")}
    pvcs: set[str] = set()
    for vol in spec.get("volumes") or []:
        if vol.get("configMap", {}).get("name"):
            cms.add(vol["configMap"]["name"])
        if vol.get("secret", {}).get("secretName"):
            secrets.add(vol["secret"]["secretName"])
        if vol.get("persistentVolumeClaim", {}).get("claimName"):
            pvcs.add(vol["persistentVolumeClaim"]["claimName"])
        for src in (vol.get("projected") or {}).get("sources") or []:
            if src.get("configMap", {}).get("name"):
                cms.add(src["configMap"]["name"])
            if src.get("secret", {}).get("name"):
                secrets.add(src["secret"]["name"])
    for _, c in containers(spec):
        for env in c.get("env") or []:
            ref = env.get("valueFrom") or {}
            if ref.get("configMapKeyRef", {}).get("name"):
                cms.add(ref["configMapKeyRef"]["name"])
            if ref.get("secretKeyRef", {}).get("name"):
                secrets.add(ref["secretKeyRef"]["name"])
        for src in c.get("envFrom") or []:
            if src.get("configMapRef", {}).get("name"):
                cms.add(src["configMapRef"]["name"])
            if src.get("secretRef", {}).get("name"):
                secrets.add(src["secretRef"]["name"])
    cms.discard("kube-root-ca.crt")  # served through the service-account secret instead
    return cms, secrets, pvcs


@dataclass
class RefIndex:
    """Which virtual pods use which ConfigMap/Secret: only those are synced by default."""

    by_target: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    by_pod: dict[tuple[str, str], set[tuple[str, str, str]]] = field(default_factory=dict)

    def update(self, pod: JSON, deleted: bool) -> set[tuple[str, str, str]]:
        """Record the pod's references; returns the targets whose use changed."""
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        old = self.by_pod.pop(key, set())
        new: set[tuple[str, str, str]] = set()
        if not deleted:
            cms, secrets, _ = referenced(pod)
            new = {("configmaps", key[0], n) for n in cms}
            new |= {("secrets", key[0], n) for n in secrets}
            self.by_pod[key] = new
        for t in old - new:
            users = self.by_target.get(t, set())
            users.discard(key[1])
            if not users:
                self.by_target.pop(t, None)
        for t in new - old:
            self.by_target.setdefault(t, set()).add(key[1])
        return old ^ new

    def used(self, resource: str, namespace: str, name: str) -> bool:
        return (resource, namespace, name) in self.by_target


def dns_service_ip(engine: Engine, dns_service: str) -> str:
    """The ClusterIP of the vcluster's DNS Service (``namespace/name``) as the informer has it;
    "" while there is none (or it is headless)."""
    namespace, _, name = dns_service.partition("/")
    services = engine.virtual_informers.get("services")
    svc = services.get(namespace, name) if services is not None else None
    ip = str(((svc or {}).get("spec") or {}).get("clusterIP") or "")
    return "" if ip == "None" else ip


class Pods:
    name = "pods"

    def __init__(
        self,
        refs: RefIndex,
        configs: dict[str, DownSync],
        api_address: Callable[[], tuple[str, int] | None] | None = None,
    ) -> None:
        self.refs = refs
        # The vcluster's kubernetes Service address for pods, when they can use it (IP:port).
        self.api_address = api_address
        self.configs = configs  # "configmaps"/"secrets"/"persistentvolumeclaims" -> DownSync
        self._ca: bytes | None = None
        # Host pods this syncer created that the host informer has not reported yet.
        self._fresh: dict[str, JSON] = {}
        # (host version copied, virtual version written) of the last status copy, per pod.
        self._status_written: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self._resize_refused: set[tuple[str, str]] = set()  # (pod uid, patch) the host refused

    def setup(self, engine: Engine) -> None:
        self.engine = engine
        self.s = engine.settings
        self.tokens = Tokens(engine, self._virtual_ca)
        self.runtime_classes = engine.cache_virtual(
            "runtimeclasses", "/apis/node.k8s.io/v1/runtimeclasses"
        )
        v = engine.watch_virtual("pods", "/api/v1/pods")
        v.add_handler(self._on_virtual)
        h = engine.watch_host("pods", engine.host_ns_path("/api/v1", "pods"))
        h.add_handler(self._on_host)

    def _on_host(self, kind: str, pod: JSON) -> None:
        self._fresh.pop(pod["metadata"]["name"], None)  # the informer has it now

    def _on_virtual(self, kind: str, pod: JSON) -> None:
        for resource, ns, name in self.refs.update(pod, kind == "DELETED"):
            if resource in self.configs:
                self.engine.enqueue(resource, ns, name)

    # -- paths
    def vpath(self, ns: str, name: str) -> str:
        return f"/api/v1/namespaces/{ns}/pods/{name}"

    def hpath(self, hname: str = "") -> str:
        base = self.engine.host_ns_path("/api/v1", "pods")
        return f"{base}/{hname}" if hname else base

    # -- reconcile: plan() decides, one method per direction carries it out
    def reconcile(self, namespace: str, name: str) -> None:
        vpod = self.engine.virtual_informers["pods"].get(namespace, name)
        hname = host_name(name, namespace, self.s.name)
        hpod = self.engine.host_informers["pods"].get(self.s.host_namespace, hname)
        if hpod is None:
            hpod = self._fresh.get(hname)
        if hpod is not None and (virtual_ref(hpod) or ("", "", ""))[:2] != (namespace, name):
            hpod = None  # another virtual object with a colliding name owns it
        step = plan(vpod, hpod, nodes=self._node_names(vpod))
        if vpod is None:
            self._status_written.pop((namespace, name), None)
        if step.action in ("delete-host", "replace-host"):
            assert hpod is not None
            self._delete_host(hpod, step.grace)
        elif step.action == "status":
            assert vpod is not None
            assert hpod is not None
            self._copy_status(vpod, hpod)
        elif step.action in ("finalize-virtual", "delete-virtual"):
            # delete-virtual is sync_to_virtual: its controller makes a new pod
            assert vpod is not None
            if step.action == "finalize-virtual":
                self._end(vpod)
            self.engine.virtual.delete(
                self.vpath(namespace, name), grace=0, uid=vpod["metadata"]["uid"]
            )
        elif step.action == "deny-node":
            assert vpod is not None
            self._deny(vpod, [step.reason], reason="NodeNotFound")
        elif step.action == "create":
            assert vpod is not None
            self.sync_to_host(vpod, hname)
        elif step.action == "update":
            assert vpod is not None
            assert hpod is not None
            self.sync(vpod, hpod)

    def _node_names(self, vpod: JSON | None) -> list[str]:
        """The vcluster's nodes, when the pod names one (spec.nodeName at creation)."""
        nodes = self.engine.virtual_informers.get("nodes")
        if vpod is None or nodes is None or not (vpod.get("spec") or {}).get("nodeName"):
            return []
        return [n["metadata"]["name"] for n in nodes.items()]

    def sync_to_host(self, vpod: JSON, hname: str) -> None:
        ns = vpod["metadata"]["namespace"]
        violations = [] if self.s.allow_privileged else pod_violations(vpod)
        if violations:
            self._deny(vpod, violations)
            return
        cms, secrets, pvcs = referenced(vpod)
        for resource, names in (
            ("configmaps", cms),
            ("secrets", secrets),
            ("persistentvolumeclaims", pvcs),
        ):
            sync = self.configs.get(resource)
            if sync is None:
                continue
            for n in names:
                obj = sync.virtual(ns, n)
                if obj is not None:
                    sync.ensure(obj)
        token_secret = token_secret_name(hname)
        host_pod = self.engine.own(translate_pod(vpod, self._context(vpod, token_secret)))
        try:
            created = self.engine.host.create(self.hpath(), host_pod)
        except ApiError as exc:
            if exc.status == 409:
                raise  # the old copy is still terminating: retry with backoff
            if exc.status in (400, 403, 422):
                self._deny(vpod, [f"the host rejected the pod: {exc}"], reason="SyncFailed")
                if exc.status == 403 and "cannot create resource" in str(exc):
                    # Not the pod's fault but the syncer's rights: a host API server that has
                    # just restarted refuses until its authorizer has loaded RBAC. Said on
                    # the pod, and tried again with back-off.
                    raise
                return
            raise
        # The tokens come once the host has bound the pod (see tokens.py), from a reconcile of
        # their own. Until the host informer reports the pod, reconciles take it from _fresh.
        self._fresh[hname] = created
        self.tokens.created(hname)
        self.engine.queue.add(("pods", ns, vpod["metadata"]["name"]), priority=FOLLOW_UP)

    def sync(self, vpod: JSON, hpod: JSON) -> None:
        """Both exist: the host copy follows the virtual pod's changes (labels, annotations,
        images, deadline, tolerations, ephemeral containers); the virtual pod gets its node
        and the host's status."""
        self._update_host(vpod, hpod)
        ns, name = vpod["metadata"]["namespace"], vpod["metadata"]["name"]
        node = (hpod.get("spec") or {}).get("nodeName")
        if node and not (vpod.get("spec") or {}).get("nodeName"):
            nodes = self.engine.resources.get("nodes")
            if nodes is not None:
                nodes.ensure(node)  # type: ignore[attr-defined]
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            }
            try:
                self.engine.virtual.create(self.vpath(ns, name) + "/binding", binding)
            except ApiError as exc:
                if exc.status != 409:  # already bound
                    raise
            else:
                vpod = {**vpod, "status": bound_status(vpod.get("status"))}
        self._copy_status(vpod, hpod)
        self.tokens.ensure(vpod, hpod)  # after the binding: the tokens name the node

    def _copy_status(self, vpod: JSON, hpod: JSON) -> None:
        ns, name = vpod["metadata"]["namespace"], vpod["metadata"]["name"]
        status = virtual_status(hpod.get("status") or {}, vpod.get("status"))
        if status_differs(status, vpod.get("status")) and not self._status_pending(vpod, hpod):
            patched = self.engine.virtual.merge_patch(
                self.vpath(ns, name) + "/status", {"status": status}
            )
            self._status_written[(ns, name)] = (
                hpod["metadata"].get("resourceVersion"),
                (patched.get("metadata") or {}).get("resourceVersion"),
            )

    def _end(self, vpod: JSON) -> None:
        """A terminating virtual pod whose host copy is gone ends in a terminal phase before
        it is removed, as a kubelet's pods do (its host copy's last status may never have
        reached the syncer); finalizers of controllers wait for that phase."""
        status = terminal_status(vpod.get("status"), now=timestamp())
        if status is None:
            return
        meta = vpod["metadata"]
        try:
            self.engine.virtual.merge_patch(
                self.vpath(meta["namespace"], meta["name"]) + "/status", {"status": status}
            )
        except ApiError as exc:
            if exc.status != 404:
                raise

    def _update_host(self, vpod: JSON, hpod: JSON) -> None:
        hname = hpod["metadata"]["name"]
        desired = translate_pod(vpod, self._context(vpod, token_secret_name(hname)))
        path = self.hpath(hname)
        meta = metadata_patch(desired["metadata"], hpod["metadata"])
        if meta is not None:
            self.engine.host.merge_patch(path, meta)
        spec = spec_patch(desired["spec"], hpod.get("spec") or {})
        if spec is not None:
            self.engine.host.request(
                "PATCH", path, spec, content_type="application/strategic-merge-patch+json"
            )
        resize = resize_patch(desired["spec"], hpod.get("spec") or {})
        if resize is not None:
            self._resize(vpod, path, resize)
        debug = new_ephemeral_containers(desired["spec"], hpod.get("spec") or {})
        if debug:
            violations = (
                []
                if self.s.allow_privileged
                else pod_violations({"spec": {"ephemeralContainers": debug}})
            )
            if violations:
                self._deny_event(vpod, violations)
                return
            self.engine.host.request(
                "PATCH",
                path + "/ephemeralcontainers",
                {"spec": {"ephemeralContainers": debug}},
                content_type="application/strategic-merge-patch+json",
            )

    def _resize(self, vpod: JSON, path: str, patch: JSON) -> None:
        """In-place resize of the host pod; a refusal (an older host without ``pods/resize``,
        a resize the node cannot fit) is an Event on the virtual pod, once per request."""
        key = (vpod["metadata"].get("uid", ""), repr(patch))
        if key in self._resize_refused:
            return
        try:
            self.engine.host.request(
                "PATCH",
                path + "/resize",
                patch,
                content_type="application/strategic-merge-patch+json",
            )
        except ApiError as exc:
            if exc.status not in (400, 403, 404, 405, 422):
                raise
            self._resize_refused.add(key)
            if self.engine.recorder is not None:
                message = f"in-place resize not applied on the host: {exc}"
                self.engine.recorder.warn(vpod, "Pod", "ResizeFailed", message)

    def _status_pending(self, vpod: JSON, hpod: JSON) -> bool:
        """Whether this host status already went onto a newer virtual version than the cached
        one: the virtual cache has not caught up with our own patch (every write of ours
        brings another event and reconcile), so patching again would change nothing."""
        meta = vpod["metadata"]
        written = self._status_written.get((meta["namespace"], meta["name"]))
        if written is None or written[0] != hpod["metadata"].get("resourceVersion"):
            return False
        try:
            return int(meta.get("resourceVersion") or 0) < int(written[1] or 0)
        except ValueError:  # resourceVersions are opaque; etcd's happen to be numbers
            return False

    def delete_host_copy(self, hpod: JSON) -> None:
        """At once (a reset): the API object goes now, the host's kubelet stops it after."""
        self._delete_host(hpod, grace=0)

    def _delete_host(self, hpod: JSON, grace: int | None = None) -> None:
        meta = hpod["metadata"]
        self._fresh.pop(meta["name"], None)
        self.tokens.forget(meta["name"])
        self.engine.host.delete(self.hpath(meta["name"]), grace=grace, uid=meta.get("uid"))
        self.engine.host.delete(
            self.engine.host_ns_path("/api/v1", "secrets") + f"/{token_secret_name(meta['name'])}"
        )

    # -- pod context: DNS, API service, tokens
    def _runtime_handlers(self, vpod: JSON) -> dict[str, str]:
        name = (vpod.get("spec") or {}).get("runtimeClassName")
        found = self.runtime_classes.get("", name) if name else None
        return {name: str(found.get("handler") or "")} if name and found else {}

    def _context(self, vpod: JSON, token_secret: str) -> PodContext:
        api = self.api_address() if self.api_address else None
        return PodContext(
            vcluster=self.s.name,
            host_namespace=self.s.host_namespace,
            dns_ip=dns_service_ip(self.engine, self.s.dns_service),
            api_host=api[0] if api else self.s.api_service_host,
            api_port=api[1] if api else self.s.api_service_port,
            service_account_secret=token_secret,
            allow_privileged=self.s.allow_privileged,
            cluster_domain=self.s.cluster_domain,
            runtime_handlers=self._runtime_handlers(vpod),
            service_env=self._service_env(vpod),
        )

    def _service_env(self, vpod: JSON) -> list[dict[str, str]]:
        services = self.engine.virtual_informers.get("services")
        if services is None:  # services are not synced: their IPs reach nothing
            return []
        services.synced.wait(10)  # a pod made at start still sees the Services made before it
        namespace = vpod["metadata"]["namespace"]
        mine = [s for s in services.items() if s["metadata"].get("namespace") == namespace]
        return namespace_service_env(mine, vpod.get("spec") or {})

    def _virtual_ca(self) -> bytes:
        """The CA synced pods trust: ``kube-root-ca.crt`` as the controller-manager publishes
        it; until it has (it starts seconds after the API server, and CoreDNS's pod is synced
        before that), the CA of the syncer's own kubeconfig, which is the same certificate in
        the vclusters this project makes."""
        if self._ca is None:
            try:
                cm = self.engine.virtual.get(
                    "/api/v1/namespaces/default/configmaps/kube-root-ca.crt"
                )
            except ApiError as exc:
                ca_file = self.engine.virtual.ca_file
                if exc.status != 404 or not ca_file:
                    raise
                with open(ca_file, "rb") as f:
                    self._ca = f.read()
            else:
                self._ca = str(cm["data"]["ca.crt"]).encode()
        return self._ca

    # -- refusing
    def _deny_event(self, vpod: JSON, reasons: list[str]) -> None:
        """A running pod's new part (an ephemeral container) is refused: an Event only."""
        message = "ephemeral container not synced to the host: " + "; ".join(reasons)
        meta = vpod["metadata"]
        log.warning("pod %s/%s %s", meta["namespace"], meta["name"], message)
        if self.engine.recorder is not None:
            self.engine.recorder.warn(vpod, "Pod", DENIED_REASON, message)

    def _deny(self, vpod: JSON, reasons: list[str], reason: str = DENIED_REASON) -> None:
        meta = vpod["metadata"]
        message = "not synced to the host: " + "; ".join(reasons)
        conditions = (vpod.get("status") or {}).get("conditions") or []
        if any(c.get("reason") == reason and c.get("message") == message for c in conditions):
            return
        log.warning("pod %s/%s %s", meta["namespace"], meta["name"], message)
        if self.engine.recorder is not None:
            self.engine.recorder.warn(vpod, "Pod", reason, message)
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": timestamp(),
        }
        self.engine.virtual.request(
            "PATCH",
            self.vpath(meta["namespace"], meta["name"]) + "/status",
            {"status": {"conditions": [condition]}},
            content_type="application/strategic-merge-patch+json",
        )
