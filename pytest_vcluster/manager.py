"""The vclusters of one pytest process on one host: create (or hand out a prewarmed one),
and at the end of each use apply the keep policy. No pytest here: the fixtures are thin."""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from . import kept
from .errors import VClusterError
from .hosts.base import Host, Progress, RuntimeOptions
from .idle import IdleGate
from .naming import EXPIRES_LABEL, RUN_LABEL
from .settings import IDLE, Settings
from .spec import VClusterSpec
from .vcluster import VCluster


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=2)


@dataclass(frozen=True)
class Pooled:
    """A vcluster of the pool and its start in the background (None: never started, the
    session ended first); ``go`` starts it without waiting for an idle machine."""

    vc: VCluster
    started: Future[VCluster | None]
    go: threading.Event


class Manager:
    """``warn`` reports what teardown could not remove (the fixtures make it a
    ``CleanupWarning`` in pytest's summary)."""

    def __init__(
        self,
        settings: Settings,
        host: Host,
        run_id: str,
        progress: Progress,
        warn: Callable[[str], None] = _warn,
    ) -> None:
        self.settings = settings
        self.host = host
        self.run_id = run_id
        self.progress = progress
        self.warn = warn
        self.kept: list[kept.KeptRecord] = []
        self._counter = itertools.count()
        self._pool: deque[Pooled] = deque()
        self._executor: ThreadPoolExecutor | None = None
        # Deleted vclusters whose host namespace the namespace controller still removes.
        self._terminating: deque[VCluster] = deque()
        self.idle_gate = IdleGate()
        self._closing = threading.Event()

    def new_name(self) -> str:
        return f"vc{os.getpid()}-{next(self._counter)}"

    @property
    def pool_size(self) -> int:
        """``--vcluster-prewarm``, else the host's default."""
        asked = self.settings.prewarm
        return self.host.provides.default_prewarm if asked is None else asked

    # A vcluster with default settings takes seconds to start, mostly kube-apiserver's own
    # start-up: keep ``pool_size`` of them starting in the background, one at a time, and hand
    # one out on request. Under the ``idle`` budget each start waits for an idle machine
    # (idle.py: most of a start's cost is outside its pod), and on chart hosts runs with the
    # least CPU weight (a quantity: a CPU limit instead, at once), lifted when a test takes it.
    def prewarm(self) -> None:
        if self.pool_size <= 0:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="vcluster-prewarm")
        budget = self.settings.prewarm_cpu if self.host.provides.chart_values else None
        while len(self._pool) < self.pool_size:
            vc = self._handle(VClusterSpec(), cpu_budget=budget)
            go = threading.Event()
            started = self._executor.submit(self._start_pooled, vc, go)
            self._pool.append(Pooled(vc, started, go))

    def _start_pooled(self, vc: VCluster, go: threading.Event) -> VCluster | None:
        if self.settings.prewarm_cpu == IDLE:
            t0 = time.monotonic()
            why = self.idle_gate.wait(go)
            self.progress(
                f"pytest-vcluster: vcluster {vc.name}: prewarm starts after "
                f"{time.monotonic() - t0:.1f}s ({why})"
            )
        if self._closing.is_set():
            return None
        return vc.create()

    def _take_prewarmed(self) -> VCluster | None:
        while self._pool:
            pooled = self._pool.popleft()
            pooled.go.set()  # not started yet? then now
            pooled.vc.lift_cpu_budget()  # still starting? then with the whole CPU from now on
            try:
                if pooled.started.result() is None:
                    continue
            except Exception as exc:  # fall back to a synchronous create, report why
                self.progress(f"pytest-vcluster: a prewarmed vcluster failed: {exc}")
                continue
            self.prewarm()
            self.progress(f"pytest-vcluster: vcluster {pooled.vc.name}: prewarmed, ready")
            return pooled.vc
        return None

    def create(self, spec: VClusterSpec | None = None) -> VCluster:
        """A ready vcluster of ``spec`` (validated by ``build_spec``)."""
        spec = spec or VClusterSpec()
        if spec.is_default:
            vc = self._take_prewarmed()
            if vc is not None:
                return vc
        try:
            return self._build(spec)
        finally:
            self.prewarm()

    def _build(self, spec: VClusterSpec) -> VCluster:
        return self._handle(spec).create()

    def _handle(self, spec: VClusterSpec, cpu_budget: str | None = None) -> VCluster:
        """A vcluster of ``spec``, not started yet."""
        # Chart values: the --vcluster-values file, then the spec's (the marker's, ...).
        spec = spec.over(self.settings.values).named(spec.name or self.new_name())
        options = RuntimeOptions(
            labels={
                RUN_LABEL: self.run_id,
                EXPIRES_LABEL: str(int(time.time() + self.settings.ttl)),
            },
            timeout=self.settings.timeout,
            progress=self.progress,
            detachable=self.settings.keep != "never",
            node_port=self.settings.access == "auto",
            cpu_budget=cpu_budget,
        )
        return VCluster.from_spec(self.host, spec, options, cache_dir=self.settings.cache_dir)

    def finish(self, vc: VCluster, failed: bool) -> None:
        """Keep it (per ``--vcluster-keep``) or delete it; never raises."""
        keep = self.settings.keep == "always" or (self.settings.keep == "on-failure" and failed)
        if keep:
            record = dataclasses.replace(vc.detach(), kept_at=time.time())
            kept.save(record, self.settings.cache_dir)
            self.kept.append(record)
            return
        try:
            # The namespace controller removes a deleted namespace only after a fixed 5 s: wait
            # for that once, for all of them, at the end of the session (close()).
            vc.delete(wait=False)
        except Exception as exc:  # report, never hide the test's own outcome
            self.warn(f"vcluster {vc.name}: cleanup failed: {exc}")
            return
        if self.host.provides.deferred_namespace_wait:
            self._terminating.append(vc)

    def close(self) -> None:
        """Delete the prewarmed vclusters nobody took; wait for the host namespaces that are
        still terminating (a warning names any that is not gone)."""
        self._closing.set()
        for pooled in self._pool:  # waiting for an idle machine: end the wait, start nothing
            pooled.go.set()
        while self._pool:
            pooled = self._pool.popleft()
            if pooled.started.cancel():  # queued, never begun: nothing to delete
                continue
            try:
                vc = pooled.started.result()
            except Exception as exc:  # it never started: nothing to delete, say why
                self.progress(f"pytest-vcluster: a prewarmed vcluster failed: {exc}")
                continue
            if vc is None:  # the session ended before it started
                continue
            try:
                vc.delete()
            except VClusterError as exc:
                self.warn(f"vcluster {vc.name} (prewarmed, unused): cleanup failed: {exc}")
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._terminating:
            self.progress(
                f"pytest-vcluster: waiting for {len(self._terminating)} host namespace(s) to go"
            )
        while self._terminating:
            vc = self._terminating.popleft()
            if not vc.wait_deleted():
                self.warn(f"vcluster {vc.name}: host namespace {vc.host_namespace} still exists")
