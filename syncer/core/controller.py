"""The syncer's engine: informers on both sides feed one work queue of virtual keys.

A key is ``(resource, namespace, name)`` of the *virtual* object; host events map back to it
through the bookkeeping annotations, so both sides converge on one reconcile per object. Workers
run reconciles concurrently, never two for the same key. Conflicts and transient errors requeue
with per-key exponential backoff; nothing busy-loops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ..kube import JSON, ApiError, Kube
from ..settings import Settings
from ..translate.metadata import virtual_ref
from .informer import Informer, wait_synced
from .metrics import Metrics
from .workqueue import WorkQueue

if TYPE_CHECKING:
    from ..resources.events import EventRecorder

log = logging.getLogger(__name__)
Key = tuple[str, str, str]


class Resource(Protocol):
    name: str  # "pods", "configmaps", ...

    def setup(self, engine: Engine) -> None: ...

    def reconcile(self, namespace: str, name: str) -> None: ...


class Engine:
    def __init__(self, settings: Settings, virtual: Kube, host: Kube) -> None:
        self.settings = settings
        self.virtual = virtual
        self.host = host
        self.queue = WorkQueue(update_limit=settings.update_workers)
        self.metrics = Metrics(self.queue, {"virtual": virtual, "host": host})
        self.resources: dict[str, Resource] = {}
        self.informers: list[Informer] = []
        self.virtual_informers: dict[str, Informer] = {}
        self.host_informers: dict[str, Informer] = {}
        self.recorder: EventRecorder | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._gate = threading.Condition()  # paused(): no reconcile runs
        self._paused = False
        self._active = 0
        self.owner: JSON | None = None  # ownerReference put on every host object (own())
        self.owner_service: JSON | None = None  # the Service it names, as first read
        # Virtual Services this pod serves through a host Service of the chart's (their
        # objects are written in the vcluster, never synced down: resources/pinned.py).
        self.pinned: set[tuple[str, str]] = {("default", "kubernetes")}

    # -- wiring
    def resolve_owner(self, timeout: float = 60.0) -> None:
        """Look up ``--owner-service`` once, before any host object is written (the chart's
        Service is created with the syncer's pod: wait for it a little)."""
        name = self.settings.owner_service
        if not name:
            return
        path = self.host_ns_path("/api/v1", "services") + f"/{name}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                svc = self.host.get(path)
                break
            except (ApiError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"owner Service {name}: {exc}") from exc
                time.sleep(0.5)
        self.owner_service = svc
        self.owner = {
            "apiVersion": "v1",
            "kind": "Service",
            "name": name,
            "uid": svc["metadata"]["uid"],
        }

    def own(self, host_obj: JSON) -> JSON:
        """Give a host object the owner reference, unless it has owners of its own (a pod's
        token Secret is owned by its pod)."""
        if self.owner is not None:
            meta = host_obj.setdefault("metadata", {})
            if not meta.get("ownerReferences"):
                meta["ownerReferences"] = [dict(self.owner)]
        return host_obj

    def managed_selector(self) -> str:
        from ..constants import MANAGED_BY_LABEL

        return f"{MANAGED_BY_LABEL}={self.settings.name}"

    def host_ns_path(self, api: str, plural: str) -> str:
        return f"{api}/namespaces/{self.settings.host_namespace}/{plural}"

    def watch_virtual(self, resource: str, path: str, **kw: Any) -> Informer:
        inf = Informer(self.virtual, path, name=f"virtual:{resource}", **kw)
        inf.add_handler(lambda t, obj: self.enqueue_virtual(resource, obj, urgent=t == "ADDED"))
        self.virtual_informers[resource] = inf
        self.informers.append(inf)
        return inf

    def cache_virtual(self, resource: str, path: str, **kw: Any) -> Informer:
        """A virtual informer that only answers lookups (nothing is reconciled for it)."""
        inf = Informer(self.virtual, path, name=f"virtual:{resource}", **kw)
        self.virtual_informers[resource] = inf
        self.informers.append(inf)
        return inf

    def watch_host(self, resource: str, path: str, **kw: Any) -> Informer:
        kw.setdefault("label_selector", self.managed_selector())
        inf = Informer(self.host, path, name=f"host:{resource}", **kw)
        inf.add_handler(lambda _t, obj: self.enqueue_host(resource, obj))
        self.host_informers[resource] = inf
        self.informers.append(inf)
        return inf

    def add(self, resource: Resource) -> None:
        self.resources[resource.name] = resource

    def enqueue(self, resource: str, namespace: str, name: str, urgent: bool = False) -> None:
        self.queue.add((resource, namespace, name), urgent)

    def enqueue_virtual(self, resource: str, obj: JSON, urgent: bool = False) -> None:
        """``urgent``: a new virtual object, served before updates (see WorkQueue)."""
        meta = obj.get("metadata") or {}
        self.enqueue(resource, meta.get("namespace", ""), meta["name"], urgent)

    def enqueue_host(self, resource: str, obj: JSON) -> None:
        ref = virtual_ref(obj)
        if ref is not None:
            self.enqueue(resource, ref[0], ref[1])

    # -- running
    def start(self, sync_timeout: float = 60.0) -> None:
        for resource in self.resources.values():
            resource.setup(self)
        for inf in self.informers:
            inf.start()
        for i in range(self.settings.workers):
            t = threading.Thread(target=self._worker, name=f"worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        threading.Thread(target=self._wait_ready, args=(sync_timeout,), daemon=True).start()

    def _wait_ready(self, timeout: float) -> None:
        while not self._stop.is_set():
            if wait_synced(self.informers, timeout):
                self.ready.set()
                log.info("all informers synced; %d keys queued", len(self.queue))
                return

    def stop(self) -> None:
        self._stop.set()
        for inf in self.informers:
            inf.stop()
        self.queue.shutdown()

    @contextlib.contextmanager
    def paused(self, timeout: float = 30.0) -> Iterator[None]:
        """No reconcile runs inside (the ones running are waited for; queued keys wait): a
        reset changes both sides under the workers' feet."""
        with self._gate:
            self._paused = True
            idle = self._gate.wait_for(lambda: self._active == 0, timeout)
        try:
            if not idle:
                raise TimeoutError(f"reconciles still running after {timeout:.0f}s")
            yield
        finally:
            with self._gate:
                self._paused = False
                self._gate.notify_all()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def _worker(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get()
            if item is None:
                return
            key, waited = item
            assert isinstance(key, tuple)
            resource, namespace, name = key
            with self._gate:
                self._gate.wait_for(lambda: not self._paused)
                self._active += 1
            start = time.monotonic()
            try:
                # Both sides must be listed before deciding that something is missing.
                if not self._synced_for(resource):
                    self.queue.add_after(key, 0.05)
                    continue
                self.resources[resource].reconcile(namespace, name)
            except ApiError as exc:
                delay = self.queue.add_rate_limited(key)
                self.metrics.error(resource)
                lvl = logging.DEBUG if exc.status == 409 else logging.WARNING
                log.log(lvl, "%s %s/%s: %s (retry in %.2fs)", resource, namespace, name, exc, delay)
            except Exception:
                delay = self.queue.add_rate_limited(key)
                self.metrics.error(resource)
                log.exception("%s %s/%s failed (retry in %.2fs)", resource, namespace, name, delay)
            else:
                self.queue.forget(key)
                took = time.monotonic() - start
                self.metrics.synced(resource, waited + took, took)
            finally:
                self.queue.done(key)
                with self._gate:
                    self._active -= 1
                    self._gate.notify_all()

    def _synced_for(self, resource: str) -> bool:
        v = self.virtual_informers.get(resource)
        h = self.host_informers.get(resource)
        return (v is None or v.synced.is_set()) and (h is None or h.synced.is_set())
