"""Counters for /metrics (Prometheus text format) and an HTTP server for probes."""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .workqueue import WorkQueue


class Metrics:
    def __init__(self, queue: WorkQueue, clients: Mapping[str, Any] | None = None) -> None:
        self.queue = queue
        self.clients = dict(clients or {})  # "virtual"/"host" -> Kube (counts its requests)
        self._lock = threading.Lock()
        self.syncs: dict[str, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.recent: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=1000))
        self.reconcile: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=1000))
        self.kubelet: Any = None  # the fake nodes' kubelet server, when it runs

    def synced(self, resource: str, seconds: float, reconcile: float = 0.0) -> None:
        """``seconds``: queued + reconcile time; ``reconcile``: the reconcile alone."""
        with self._lock:
            self.syncs[resource] += 1
            self.latency_sum[resource] += seconds
            self.recent[resource].append(seconds)
            self.reconcile[resource].append(reconcile)

    def error(self, resource: str) -> None:
        with self._lock:
            self.errors[resource] += 1

    def render(self) -> str:
        lines = [
            "# TYPE syncer_queue_depth gauge",
            f"syncer_queue_depth {len(self.queue)}",
            "# TYPE syncer_syncs_total counter",
            "# TYPE syncer_errors_total counter",
            "# TYPE syncer_sync_seconds summary",
            "# TYPE syncer_api_requests_total counter",
        ]
        lines += [
            f'syncer_api_requests_total{{server="{name}"}} {kube.requests}'
            for name, kube in self.clients.items()
        ]
        lines.append("# TYPE syncer_api_requests_by_kind_total counter")
        lines += [
            f'syncer_api_requests_by_kind_total{{server="{name}",kind="{kind}"}} {n}'
            for name, kube in self.clients.items()
            for kind, n in sorted(dict(kube.by_kind).items())
        ]
        with self._lock:
            for r, n in sorted(self.syncs.items()):
                lines.append(f'syncer_syncs_total{{resource="{r}"}} {n}')
                lines.append(f'syncer_sync_seconds_sum{{resource="{r}"}} {self.latency_sum[r]:.6f}')
                lines.append(f'syncer_sync_seconds_count{{resource="{r}"}} {n}')
                for metric, values in (
                    ("syncer_sync_seconds", self.recent[r]),
                    ("syncer_reconcile_seconds", self.reconcile[r]),
                ):
                    ordered = sorted(values)
                    for q in (0.5, 0.99):
                        i = min(len(ordered) - 1, int(q * len(ordered)))
                        v = ordered[i] if ordered else 0.0
                        lines.append(f'{metric}{{resource="{r}",quantile="{q}"}} {v:.6f}')
            for r, n in sorted(self.errors.items()):
                lines.append(f'syncer_errors_total{{resource="{r}"}} {n}')
        if self.kubelet is not None:
            lines += [
                "# TYPE syncer_kubelet_calls_total counter",
                *(
                    f'syncer_kubelet_calls_total{{verb="{v}"}} {n}'
                    for v, n in sorted(self.kubelet.calls.items())
                ),
                "# TYPE syncer_kubelet_open_connections gauge",
                f"syncer_kubelet_open_connections {self.kubelet.open_connections}",
                "# TYPE syncer_kubelet_open_calls gauge",
                *(
                    f'syncer_kubelet_open_calls{{verb="{v}"}} {n}'
                    for v, n in sorted(self.kubelet.open_calls.items())
                ),
            ]
        return "\n".join(lines) + "\n"


def serve(
    address: str,
    healthy: Callable[[], bool],
    ready: Callable[[], bool],
    metrics: Metrics,
    checks: Mapping[str, Callable[[], str]] | None = None,
) -> ThreadingHTTPServer:
    """``/healthz``, ``/readyz``, ``/metrics``, and ``/readyz/<check>`` for each of ``checks``
    (a check returns "" when it passes, else the reason, sent with the 503)."""
    host, _, port = address.rpartition(":")
    extra = dict(checks or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                ok = healthy()
                body = "ok" if ok else "not ok"
            elif self.path == "/readyz":
                ok = ready()
                body = "ok" if ok else "not ok"
            elif self.path == "/metrics":
                ok, body = True, metrics.render()
            elif self.path.startswith("/readyz/") and self.path[8:] in extra:
                problem = extra[self.path[8:]]()
                ok, body = not problem, problem or "ok"
            else:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port or 0)), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
