"""The vcluster's pod as the host reports it, kept current by a watch in a thread: each change
arrives within milliseconds and the readiness stages read it without a request per poll."""

from __future__ import annotations

import json
import threading
from typing import Any

from ...errors import InClusterError
from .hostapi import HostApi

WATCH_SECONDS = 60  # the server ends a watch after this; it is opened again at once
GIVE_UP_AFTER = 20  # consecutive failures to open it: the host is not usable


class PodWatch:
    def __init__(self, api: HostApi, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self._pod: dict[str, Any] | None = None
        self._failures = 0
        self._error = ""
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)
        self._thread.start()

    def latest(self) -> dict[str, Any] | None:
        """The pod as last seen (None: not created yet); raises when the watch cannot be
        opened at all any more."""
        if self._failures > GIVE_UP_AFTER:
            raise InClusterError(f"watching pod {self.namespace}/{self.name}: {self._error}")
        return self._pod

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:  # unblock the thread's read
            (getattr(resp, "shutdown", None) or resp.close)()
        self._thread.join(2)

    def _run(self) -> None:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines
        from urllib3.exceptions import HTTPError

        while not self._stop.is_set():
            try:
                self._resp = self.api.watch_pod(self.namespace, self.name, WATCH_SECONDS)
                for line in iter_resp_lines(self._resp):  # type: ignore[no-untyped-call]
                    self._failures = 0
                    if not self._event(json.loads(line)):
                        break
            except (ApiException, HTTPError, OSError, ValueError) as exc:
                if self._stop.is_set():
                    return
                self._failures += 1
                self._error = f"{type(exc).__name__}: {exc}"[:500]
                self._stop.wait(min(0.05 * 2**self._failures, 1.0))
            finally:
                if self._resp is not None:
                    self._resp.release_conn()
                    self._resp = None

    def _event(self, event: dict[str, Any]) -> bool:
        """Take one watch event; False when the watch must be opened again (ERROR: expired)."""
        change = event.get("type")
        if change in ("ADDED", "MODIFIED"):
            self._pod = event.get("object")
        elif change == "DELETED":  # the StatefulSet makes it again
            self._pod = None
        return change != "ERROR"
