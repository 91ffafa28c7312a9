"""LIST then WATCH one resource into a local cache, for ever.

WATCH resumes from the last resourceVersion seen (bookmarks keep it fresh on quiet streams); a
410 Gone or an "Expired" error re-LISTs and reports every change the gap hid (including
deletions, by diffing the old cache against the new list). Errors back off exponentially up to
``max_backoff`` so a restarting API server is polled, not hammered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..kube import JSON, ApiError, Kube

log = logging.getLogger(__name__)
Handler = Callable[[str, JSON], None]  # ("ADDED"|"MODIFIED"|"DELETED", object)


def key_of(obj: JSON) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta["name"])


class Informer:
    def __init__(
        self,
        kube: Kube,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        handler: Handler | None = None,
        watch_timeout: int = 300,
        max_backoff: float = 5.0,
        name: str | None = None,
    ) -> None:
        self.kube = kube
        self.path = path
        self.params: dict[str, Any] = {}
        if label_selector:
            self.params["labelSelector"] = label_selector
        if field_selector:
            self.params["fieldSelector"] = field_selector
        self.handlers: list[Handler] = [handler] if handler else []
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.name = name or f"{kube.name}:{path}"
        self.cache: dict[tuple[str, str], JSON] = {}
        self.synced = threading.Event()
        self.lists = 0  # how many LISTs ran (tests check re-LIST on 410)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rv = ""
        self._seen = threading.Condition()  # notified when _rv moves on
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    # -- cache access
    def get(self, namespace: str, name: str) -> JSON | None:
        with self._lock:
            return self.cache.get((namespace, name))

    def items(self) -> list[JSON]:
        with self._lock:
            return list(self.cache.values())

    def wait_seen(self, revision: int, timeout: float) -> bool:
        """Wait until events up to ``revision`` (an etcd revision: the API server's
        resourceVersions are) are in the cache and handed to the handlers."""

        def seen() -> bool:
            try:
                return int(self._rv or 0) >= revision
            except ValueError:  # resourceVersions are opaque to clients; etcd's are numbers
                return True

        with self._seen:
            return self._seen.wait_for(seen, timeout)

    def _advance(self, rv: str) -> None:
        with self._seen:
            self._rv = rv
            self._seen.notify_all()

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    # -- lifecycle
    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _emit(self, kind: str, obj: JSON) -> None:
        for handler in self.handlers:
            try:
                handler(kind, obj)
            except Exception:  # a handler bug must not kill the watch
                log.exception("%s: handler failed on %s", self.name, kind)

    def _relist(self) -> None:
        listing = self.kube.get(self.path, **self.params)
        self.lists += 1
        fresh = {key_of(o): o for o in listing.get("items") or []}
        with self._lock:
            old, self.cache = self.cache, fresh
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None:
                self._emit("ADDED", obj)
            elif prev["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._emit("MODIFIED", obj)
        for key, obj in old.items():
            if key not in fresh:
                self._emit("DELETED", obj)
        self._advance(listing["metadata"]["resourceVersion"])
        self.synced.set()

    def _watch_once(self) -> None:
        for event in self.kube.watch(
            self.path, self._rv, timeout_seconds=self.watch_timeout, params=self.params
        ):
            if self._stop.is_set():
                return
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410 or obj.get("reason") in ("Expired", "Gone"):
                    self._rv = ""
                    return
                raise ApiError(int(obj.get("code") or 500), obj, "WATCH", self.path)
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if kind != "BOOKMARK":
                key = key_of(obj)
                with self._lock:
                    if kind == "DELETED":
                        self.cache.pop(key, None)
                    else:
                        self.cache[key] = obj
                self._emit(str(kind), obj)
            if rv:  # after the handlers: wait_seen() means handled
                self._advance(rv)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if not self._rv:
                    self._relist()
                self._watch_once()
                backoff = 0.1
            except ApiError as exc:
                if exc.status == 410:
                    self._rv = ""
                    continue
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception as exc:  # connection refused/reset while a server restarts
                log.info("%s: %s; retrying in %.1fs", self.name, type(exc).__name__, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)


def wait_synced(informers: list[Informer], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in informers)
