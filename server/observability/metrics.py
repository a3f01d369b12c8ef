"""Prometheus metrics of the server and the worker, served at /metrics on a port of their own
(CRM_METRICS_PORT for a server, CRM_WORKER_METRICS_PORT for a worker; 0 or unset: off).

One registry per process; the names are the contract an operator's dashboards use (README,
"Metrics"). Rates (rows/s, calls/s) are Prometheus' rate() over these counters.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("tnx.metrics")

# From a cached read (~1 ms) to a long export or a stream (minutes).
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)

RPC_DURATION = Histogram(
    "tnx_rpc_duration_seconds",
    "gRPC calls by method and status code (REST calls arrive through Envoy as gRPC calls)",
    ["method", "code"],
    buckets=_LATENCY_BUCKETS,
)
IMPORT_ROWS = Counter(
    "tnx_import_rows_total",
    "Import rows written by the workers, by outcome (imported, failed)",
    ["outcome"],
)
DELIVERIES = Counter(
    "tnx_deliveries_total",
    "Trigger delivery attempts by destination kind and outcome (delivered, retrying, failed)",
    ["kind", "outcome"],
)


def observe_rpc(method: str, code: str, seconds: float) -> None:
    RPC_DURATION.labels(method, code).observe(seconds)


class QueueDepth(Collector):
    """Import jobs waiting or running, read from the database at each scrape (the queue's
    truth is the jobs table: the broker holds only wake-ups)."""

    def __init__(self, count_by_state: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._count_by_state = count_by_state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "tnx_import_jobs", "Import jobs not finished, by state", labels=["state"]
        )
        try:
            for state, count in self._count_by_state():
                family.add_metric([state], count)
        except Exception:  # a scrape during an outage reports nothing rather than failing
            log.warning("import queue depth unavailable", exc_info=True)
        yield family


class _Handler(BaseHTTPRequestHandler):
    live: Callable[[], bool] = staticmethod(lambda: True)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/metrics":
            self._reply(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        elif self.path in ("/livez", "/healthz"):
            alive = type(self).live()
            self._reply(200 if alive else 503, "text/plain", b"ok\n" if alive else b"dead\n")
        else:
            self._reply(404, "text/plain", b"not found\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
        pass


def port_from_env(name: str) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else 0


def serve(port: int, *, live: Callable[[], bool] | None = None) -> ThreadingHTTPServer | None:
    """/metrics (and /livez: `live()` decides) on 127.0.0.1:`port` in a daemon thread."""
    if port <= 0:
        return None
    handler = type("MetricsHandler", (_Handler,), {"live": staticmethod(live or (lambda: True))})
    host = os.environ.get("CRM_METRICS_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server
