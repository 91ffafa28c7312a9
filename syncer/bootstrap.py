"""Objects the syncer creates in the virtual cluster at start (``--bootstrap-dir``): CoreDNS.

The chart renders the manifests into a ConfigMap mounted at ``--bootstrap-dir``; every
``*.yaml`` file there (sorted by name) is read, ``${HOST_DNS}`` is replaced by the first
nameserver of this process's ``/etc/resolv.conf`` (in the chart's pod: the host cluster's DNS),
and each object is created in the virtual cluster unless it exists (create-only: what a user
changed afterwards stays). A background thread retries until the virtual API server takes them.

Pods among them are bare Pods (CoreDNS is one: no wait for the controller-manager's Deployment
and ReplicaSet controllers, which start seconds after the API server); with no controller of
their own, this thread keeps them: a Pod that is gone or has ended is created again.

CoreDNS needs the host's DNS for one thing: its pods (and every synced pod) reach the vcluster's
API server through ``KUBERNETES_SERVICE_HOST=<release>.<namespace>.svc``, a host name. Its
Corefile forwards that zone, and only that one, to the host's DNS.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from .constants import ENDED_PHASES
from .kube import JSON, ApiError, Kube

log = logging.getLogger(__name__)

HOST_DNS = "${HOST_DNS}"

#: kind -> (plural, namespaced) for what bootstrap manifests may hold.
KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "ServiceAccount": ("serviceaccounts", True),
    "ConfigMap": ("configmaps", True),
    "Secret": ("secrets", True),
    "Service": ("services", True),
    "Pod": ("pods", True),
    "Deployment": ("deployments", True),
    "DaemonSet": ("daemonsets", True),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
}


def host_nameserver(resolv_conf: str | Path = "/etc/resolv.conf") -> str:
    """The first ``nameserver`` of a resolv.conf ("" when there is none)."""
    try:
        text = Path(resolv_conf).read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            return parts[1]
    return ""


def load(directory: str | Path, nameserver: str) -> list[JSON]:
    """The objects of every ``*.yaml`` in ``directory``, ``${HOST_DNS}`` substituted."""
    objs: list[JSON] = []
    for path in sorted(Path(directory).glob("*.yaml")):
        text = path.read_text()
        if HOST_DNS in text:
            if not nameserver:
                raise ValueError(f"{path}: needs ${{HOST_DNS}} but /etc/resolv.conf names none")
            text = text.replace(HOST_DNS, nameserver)
        objs += [d for d in yaml.safe_load_all(text) if d]
    for obj in objs:
        if obj.get("kind") not in KINDS:
            raise ValueError(f"bootstrap object of unsupported kind {obj.get('kind')!r}")
    return objs


def collection_path(obj: JSON) -> str:
    plural, namespaced = KINDS[obj["kind"]]
    api = obj["apiVersion"]
    prefix = f"/api/{api}" if "/" not in api else f"/apis/{api}"
    if namespaced:
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        return f"{prefix}/namespaces/{ns}/{plural}"
    return f"{prefix}/{plural}"


def apply(kube: Kube, objs: Iterable[JSON]) -> list[str]:
    """Create each object unless it exists; the names of those created."""
    created = []
    for obj in objs:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kube.create(collection_path(obj), obj)
        except ApiError as exc:
            if exc.status != 409:
                raise
        else:
            created.append(name)
    return created


def keep_pods(kube: Kube, objs: Iterable[JSON]) -> list[str]:
    """Create again the Pods among ``objs`` that are gone; delete those that have ended (the
    next call creates them). Returns the names created."""
    created = []
    for obj in objs:
        if obj["kind"] != "Pod":
            continue
        path = f"{collection_path(obj)}/{obj['metadata']['name']}"
        try:
            live: JSON | None = kube.get(path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            live = None
        if live is not None:
            if (live.get("status") or {}).get("phase") in ENDED_PHASES and not live["metadata"].get(
                "deletionTimestamp"
            ):
                kube.delete(path, uid=live["metadata"].get("uid"))
            continue
        created += apply(kube, [obj])
    return created


def refused(exc: ApiError) -> bool:
    """An answer that asking again cannot change: the object itself is wrong (400/422), or not
    allowed (403, an admission webhook's denial). 404 (its namespace comes later), 409, 429
    and 5xx are worth another try."""
    return 400 <= exc.status < 500 and exc.status not in (401, 404, 408, 409, 429)


#: How long a refused object is asked again: right after the API server is up, some refusals
#: are its own start-up still running (its system PriorityClasses, RBAC and namespaces come
#: seconds later: "no PriorityClass with name system-cluster-critical was found").
REFUSED_GRACE = 30.0


def _apply_each(
    kube: Kube, objs: list[JSON], stop: threading.Event, wait: Callable[[float], Any]
) -> list[JSON]:
    """Create each object, retrying while the API server is not up yet; one it still refuses
    after ``REFUSED_GRACE`` seconds of retries is logged and left out (asking forever would
    only repeat the error). Returns those in place."""
    placed: list[JSON] = []
    for obj in objs:
        delay, refused_for = 0.1, 0.0
        while not stop.is_set():
            try:
                apply(kube, [obj])
            except ApiError as exc:
                if refused(exc):
                    if refused_for >= REFUSED_GRACE:
                        log.error("bootstrap: %s refused, left out: %s", _name(obj), exc)
                        break
                    refused_for += delay
                log.info("bootstrap: retrying %s in %.1fs: %s", _name(obj), delay, exc)
            except Exception as exc:  # not up yet: connection refused, TLS, a reset
                log.info("bootstrap: retrying %s in %.1fs: %s", _name(obj), delay, exc)
            else:
                placed.append(obj)
                break
            wait(delay)
            delay = min(delay * 2, 0.25 if not refused_for else 1.0)
    return placed


def _name(obj: JSON) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def start(
    kube: Kube,
    directory: str,
    *,
    resolv_conf: str = "/etc/resolv.conf",
    stop: threading.Event | None = None,
    sleep: Callable[[float], Any] | None = None,
    keep_interval: float = 2.0,
) -> threading.Thread:
    """Apply the directory's manifests in a daemon thread, retrying until they are in (or
    refused for good); then keep their Pods every ``keep_interval`` seconds until ``stop``."""
    stop = stop or threading.Event()
    wait = sleep or stop.wait

    def run() -> None:
        try:
            objs = load(directory, host_nameserver(resolv_conf))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            log.error("bootstrap: cannot read %s: %s", directory, exc)
            return
        placed = _apply_each(kube, objs, stop, wait)
        log.info("bootstrap: %d of %d objects in place", len(placed), len(objs))
        if not any(o["kind"] == "Pod" for o in placed):
            return
        while not stop.is_set():
            wait(keep_interval)
            try:
                again = keep_pods(kube, placed)
            except Exception as exc:  # the API server restarts: try again next time
                log.info("bootstrap: keeping pods: %s", exc)
                continue
            if again:
                log.info("bootstrap: created again: %s", ", ".join(again))

    thread = threading.Thread(target=run, name="bootstrap", daemon=True)
    thread.start()
    return thread
