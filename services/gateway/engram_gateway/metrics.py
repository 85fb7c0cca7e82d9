"""Prometheus metrics of the gateway (names and labels are a contract: dashboards
are built on them; see docs/operations.md, "Metrics"). No per-space labels: spaces
show in the worker's. Built on a registry of the app's own, never the global one,
so several gateways can live in one process (the tests).

With several gateway processes (``ENGRAM_HTTP_WORKERS`` > 1) the values are kept in
``prometheus_client``'s multiprocess mode: each process writes its own memory-mapped
files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics``, whichever process answers
it, sums the counters and histograms of all of them (:func:`exposition`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class GatewayMetrics:
    """The gateway's metrics (no per-space labels: spaces show in the worker's)."""

    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    default_fallback: Counter
    spaces: Gauge
    grpc_requests: Counter
    grpc_request_seconds: Histogram


def gateway_metrics(registry: CollectorRegistry) -> GatewayMetrics:
    """Define the gateway's metrics on ``registry``."""
    return GatewayMetrics(
        registry=registry,
        requests=Counter(
            "engram_http_requests_total",
            "HTTP requests, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        ),
        request_seconds=Histogram(
            "engram_http_request_duration_seconds",
            "HTTP request duration, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        ),
        default_fallback=Counter(
            "engram_memory_space_default_fallback_total",
            "Requests (legacy HTTP routes, gRPC calls) that fell back to the default memory space.",
            registry=registry,
        ),
        spaces=Gauge(
            "engram_spaces",
            "Spaces in the registry, by status.",
            ["status"],
            registry=registry,
            # several processes: the one answering /metrics has just set it
            multiprocess_mode="mostrecent",
        ),
        grpc_requests=Counter(
            "engram_grpc_requests_total",
            "gRPC calls, by method (engram.v1.MemoryService/<Method>) and status code.",
            ["method", "code"],
            registry=registry,
        ),
        grpc_request_seconds=Histogram(
            "engram_grpc_request_duration_seconds",
            "gRPC call duration (a stream's: until it ends), by method.",
            ["method"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        ),
    )


def exposition(metrics: GatewayMetrics) -> bytes:
    """The text format of the gateway's metrics: of this process, or of every
    gateway process of the host in multiprocess mode."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return generate_latest(metrics.registry)
    summed = CollectorRegistry()
    MultiProcessCollector(summed, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(summed)
