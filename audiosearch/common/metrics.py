"""Prometheus metrics every gRPC service exports: per-RPC latency, counts by status code, calls in flight, and
(on jemalloc) the allocator's account of the heap.

`start_server` adds `MetricsInterceptor` outside the error mapping (so it sees the final status code) and serves
`/metrics` over HTTP on `<PREFIX>METRICS_PORT` (0: off). Service-specific metrics live beside their code (e.g.
audiosearch/gateway/metrics.py) in the same default registry, so one scrape returns them all.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from audiosearch.common.allocator import heap_stats
from audiosearch.common.interception import CallInterceptor, reporting_code, split_method

log = logging.getLogger(__name__)

# From a catalog read (milliseconds) to an hour-long ingest (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

RPC_DURATION = Histogram(
    "audiosearch_rpc_duration_seconds", "Server-side duration of an RPC, by final status code",
    ["service", "method", "code"], buckets=LATENCY_BUCKETS,
)
RPC_TOTAL = Counter(
    "audiosearch_rpc", "RPCs handled, by final status code (errors are every code but OK)",
    ["service", "method", "code"],
)
RPC_IN_FLIGHT = Gauge("audiosearch_rpc_in_flight", "RPCs being handled now", ["service", "method"])


class MetricsInterceptor(CallInterceptor):
    """Times every application RPC and counts it by the status code the client receives."""

    @contextmanager
    def around(self, method: str, context: grpc.ServicerContext) -> Iterator[None]:
        service, name = split_method(method)
        in_flight = RPC_IN_FLIGHT.labels(service, name)
        started = time.perf_counter()
        in_flight.inc()

        def count(code: grpc.StatusCode) -> None:
            in_flight.dec()
            RPC_DURATION.labels(service, name, code.name).observe(time.perf_counter() - started)
            RPC_TOTAL.labels(service, name, code.name).inc()

        with reporting_code(context, count):
            yield


HEAP_SERIES = "audiosearch_heap_bytes"


class HeapCollector(Collector):
    """`audiosearch_heap_bytes{kind}`: jemalloc's account of the process's heap (audiosearch.common.allocator), read at
    each scrape; nothing where the process runs on another allocator."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = heap_stats()
        if stats is None:
            return
        family = GaugeMetricFamily(HEAP_SERIES, "The memory allocator's account of this process's "
                                   "heap: allocated (held by the program), active, resident, retained", labels=["kind"])
        for kind, value in stats.items():
            family.add_metric([kind], value)
        yield family


@functools.cache
def register_heap_collector() -> None:
    REGISTRY.register(HeapCollector())


def serve_metrics(host: str, port: int) -> WSGIServer:
    """Serves the default registry at http://host:port/metrics in a daemon thread; stop it with shutdown()."""
    register_heap_collector()
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as error:
        raise SystemExit(f"cannot serve metrics on {host}:{port}: {error}") from error
    log.info("serving metrics", extra={"address": f"{host}:{server.server_port}"})
    return server
