"""The syncer's reset: a snapshot of the vcluster's etcd keys, and a return to it on request.

The plugin asks through an object in the vcluster (``plan.REQUEST_NAME``, annotations
``action`` snapshot|reset and a ``request`` id; the answer is ``done`` = that id, with
``result`` or ``error``): the vcluster's own RBAC guards it, no admission webhook can refuse it,
and it reaches the syncer the same way on every host. The syncer does the work because it is
next to the vcluster's etcd on every host (in the chart's pod, beside the local host's) and
knows the host copies. A reset, with the workers paused:

1. writes ``plan(snapshot, now)`` to etcd (one pass of deletes and puts: no admission webhook,
   finalizer or namespace controller can hold it up; the API servers' watches carry it to
   every controller as ordinary events);
2. waits until the syncer's own informers have seen those writes (their revisions), so its
   caches agree with the vcluster;
3. deletes the host copies whose virtual object is gone (pods at once, grace 0), and waits for
   the host informers to see them go;
4. repeats 1-3 (up to twice more) when controllers made objects from what the first pass removed (a
   ReplicaSet's pod in flight), then resumes the workers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ..core.controller import Engine
from ..core.informer import Informer
from ..etcd import Etcd
from ..kube import JSON, ApiError
from ..translate.metadata import virtual_ref
from .plan import (
    ANNOTATION,
    LIVE,
    REQUEST_NAME,
    REQUEST_PATH,
    SNAPSHOT_DIR,
    Entry,
    decode,
    encode,
    plan,
    stored_under,
    touched,
)

log = logging.getLogger(__name__)
PASSES = 3


class ResetError(RuntimeError):
    pass


class Resetter:
    def __init__(
        self,
        engine: Engine,
        etcd: Etcd | None,
        prefix: str,
        *,
        timeout: float = 30.0,
        settle: float = 1.0,
    ) -> None:
        self.engine = engine
        self.settle = settle
        self.etcd = etcd
        self.prefix = prefix.rstrip("/") + "/"
        self.timeout = timeout
        self.snapshot: dict[str, Entry] | None = None

    def setup(self) -> None:
        inf = Informer(
            self.engine.virtual,
            REQUEST_PATH,
            field_selector=f"metadata.name={REQUEST_NAME}",
            name="virtual:reset-requests",
        )
        inf.add_handler(self._on_request)
        self.engine.informers.append(inf)

    # -- requests
    def _on_request(self, kind: str, obj: JSON) -> None:
        ann = obj["metadata"].get("annotations") or {}
        data = {k[len(ANNOTATION) :]: v for k, v in ann.items() if k.startswith(ANNOTATION)}
        request = data.get("request")
        if kind == "DELETED" or not request or request == data.get("done"):
            return
        actions: dict[str, Callable[[], dict[str, Any]]] = {
            "snapshot": self.take_snapshot,
            "reset": self.reset,
        }
        action = data.get("action", "")
        answer: dict[str, str | None] = {"done": request, "result": None, "error": None}
        try:
            if action not in actions:
                raise ResetError(f"unknown action {action!r} (snapshot or reset)")
            answer["result"] = json.dumps(actions[action]())
        except Exception as exc:  # the answer carries it; the syncer goes on
            log.exception("%s failed", action)
            answer["error"] = f"{type(exc).__name__}: {exc}"
        annotations = {ANNOTATION + k: v for k, v in answer.items()}
        try:
            self.engine.virtual.merge_patch(
                f"{REQUEST_PATH}/{REQUEST_NAME}", {"metadata": {"annotations": annotations}}
            )
        except ApiError as exc:
            log.warning("could not answer %s request %s: %s", action, request, exc)

    # -- the work
    def _etcd(self) -> Etcd:
        if self.etcd is None:
            raise ResetError("this syncer has no --etcd-url: the vcluster cannot be reset")
        return self.etcd

    def _read(self) -> dict[str, Entry]:
        kvs, _ = self._etcd().get_prefix(self.prefix)
        n = len(self.prefix)
        keys = {kv.key.decode()[n:]: Entry(kv.value, kv.mod_revision) for kv in kvs}
        return {k: e for k, e in keys.items() if not k.startswith(SNAPSHOT_DIR)}

    def _store(self, snapshot: dict[str, Entry]) -> None:
        """Keep the snapshot in etcd too: a restarted syncer (or a new one) can still reset."""
        etcd = self._etcd()
        etcd.delete_prefix(self.prefix + SNAPSHOT_DIR)
        base = self.prefix + SNAPSHOT_DIR
        etcd.write(puts=[((base + k).encode(), encode(e)) for k, e in snapshot.items()])

    def _load(self) -> dict[str, Entry] | None:
        base = self.prefix + SNAPSHOT_DIR
        kvs, _ = self._etcd().get_prefix(base)
        if not kvs:
            return None
        return {kv.key.decode()[len(base) :]: decode(kv.value) for kv in kvs}

    def take_snapshot(self) -> dict[str, Any]:
        """The keys once the control plane has settled: a vcluster is ready before its
        controllers have written every default (the ServiceAccount and CA ConfigMap of each
        namespace, the ServiceCIDR, the API server's trust bundle); without them in the
        snapshot, every reset would delete them and the controllers write them again."""
        t0 = time.monotonic()
        keys = self._read()
        stable_since = t0
        while time.monotonic() - stable_since < self.settle:
            time.sleep(0.1)
            now = self._read()
            if _settled(keys) != _settled(now):
                stable_since = time.monotonic()
            keys = now
            if time.monotonic() - t0 > self.timeout:
                break
        self._store(keys)
        self.snapshot = keys
        return {"keys": len(keys), "seconds": round(time.monotonic() - t0, 3)}

    def reset(self) -> dict[str, Any]:
        if self.snapshot is None:
            self.snapshot = self._load()  # taken by this syncer before a restart
        if self.snapshot is None:
            raise ResetError("no snapshot to return to: take one first (VCluster.snapshot())")
        t0 = time.monotonic()
        deleted = restored = host_deleted = passes = 0
        keys: list[str] = []
        with self.engine.paused(self.timeout):
            while passes < PASSES:
                passes += 1
                step = plan(self.snapshot, self._read())
                written = self._etcd().write(
                    puts=[((self.prefix + k).encode(), v) for k, v in step.puts],
                    deletes=[(self.prefix + k).encode() for k in step.deletes],
                )
                # A put-back value is the snapshot's, at a new revision: the next reset must
                # not count it as changed.
                for k, value in step.puts:
                    self.snapshot[k] = Entry(value, written[(self.prefix + k).encode()])
                keys += step.changed
                deleted += len(step.deletes)
                restored += len(step.puts)
                self._wait_seen({k.decode()[len(self.prefix) :]: r for k, r in written.items()})
                host_deleted += self._delete_orphans()
                if not step:  # a pass that wrote nothing: no controller can have reacted
                    break
        return {
            "deleted": deleted,
            "restored": restored,
            "host_deleted": host_deleted,
            "passes": passes,
            "keys": keys[:50],  # what changed, the first of them
            "seconds": round(time.monotonic() - t0, 4),
        }

    def _wait_seen(self, written: dict[str, int]) -> None:
        """Each informer the writes touched has seen them (its cache agrees with etcd)."""
        informers = self.engine.virtual_informers
        prefixes = {name: stored_under(inf.path) for name, inf in informers.items()}
        for name in touched(prefixes, written):
            revision = max(r for k, r in written.items() if k.startswith(prefixes[name]))
            if not informers[name].wait_seen(revision, self.timeout):
                raise ResetError(f"the syncer's {name} informer did not see revision {revision}")

    def _orphans(self) -> list[tuple[str, JSON]]:
        found = []
        for resource, host in self.engine.host_informers.items():
            virtual = self.engine.virtual_informers.get(resource)
            if virtual is None:
                continue
            for obj in host.items():
                ref = virtual_ref(obj)
                if ref is None:
                    continue
                twin = virtual.get(ref[0], ref[1])
                if twin is None or (ref[2] and twin["metadata"].get("uid") != ref[2]):
                    found.append((resource, obj))
        return found

    def _delete_orphans(self) -> int:
        """Host copies whose virtual object is gone, deleted at once; waits until the host
        informers have seen them go. How many there were."""
        orphans = self._orphans()
        for resource, obj in orphans:
            remove = getattr(self.engine.resources.get(resource), "delete_host_copy", None)
            if remove is not None:
                remove(obj)
            else:
                path = f"{self.engine.host_informers[resource].path}/{obj['metadata']['name']}"
                self.engine.host.delete(path, grace=0, uid=obj["metadata"].get("uid"))
        deadline = time.monotonic() + self.timeout
        left = orphans
        while left:
            left = [(r, o) for r, o in left if self._still_there(r, o)]
            if left and time.monotonic() > deadline:
                names = ", ".join(f"{r}/{o['metadata']['name']}" for r, o in left)
                raise ResetError(f"host copies still there after {self.timeout:.0f}s: {names}")
            if left:
                time.sleep(0.01)
        return len(orphans)

    def _still_there(self, resource: str, obj: JSON) -> bool:
        meta = obj["metadata"]
        now = self.engine.host_informers[resource].get(meta.get("namespace", ""), meta["name"])
        return now is not None and now["metadata"].get("uid") == meta.get("uid")


def _settled(keys: dict[str, Entry]) -> dict[str, int]:
    """What must stop changing before a snapshot: every key but live state."""
    return {k: e.mod_revision for k, e in keys.items() if not k.startswith(LIVE)}
