"""Operations: liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST

from engram_contract.errors import Unavailable
from engram_gateway.answers import TEXT, Health, Readiness
from engram_gateway.auth import OPEN
from engram_gateway.metrics import GatewayMetrics, exposition
from engram_gateway.openapi import Content, api
from engram_gateway.routes.common import bridge_of
from engram_nats.registry import cluster_state

#: Litestar adds the charset to a text/* media type itself (else it is there twice)
METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


@get(
    "/health",
    tags=["ops"],
    summary="Liveness: NATS connected and the registry watch running",
    description="200 `{status: ok}` while the gateway's NATS connection is up and its "
    "space registry watch runs; otherwise 503 problem+json saying which is not.",
    opt=OPEN | api({200: Health}, errors=[503]),
)
async def health(state: State) -> dict[str, str]:
    reason = bridge_of(state).healthy
    if reason is not None:
        raise Unavailable(
            503,
            "Unhealthy",
            reason,
            hint="The gateway reconnects to NATS by itself; restart it if this persists.",
        )
    return {"status": "ok"}


@get(
    "/ready",
    tags=["ops"],
    summary="Readiness: NATS connected and registry loaded",
    description="200 when NATS is connected and the registry loaded, else 503. "
    "`nats_cluster` says whether a JetStream cluster has lost a node (`degraded`: "
    "still serving, on a quorum) — a degraded cluster does not make the gateway unready.",
    opt=OPEN | api({200: Readiness, 503: Readiness}),
)
async def ready(state: State) -> Response[dict[str, Any]]:
    bridge = bridge_of(state)
    checks = {
        "nats_connected": bool(bridge.nc.is_connected),
        "registry_loaded": bridge.registry.loaded.is_set(),
    }
    ok = all(checks.values())
    # null: one server, or the cluster's state could not be read just now
    body: dict[str, Any] = {
        "status": "ready" if ok else "not ready",
        **checks,
        "nats_cluster": None,
    }
    if checks["nats_connected"]:
        with contextlib.suppress(Exception):
            cluster = await asyncio.wait_for(cluster_state(bridge.js), 2.0)
            body["nats_cluster"] = None if cluster is None else cluster.model_dump()
    return Response(body, status_code=200 if ok else 503)


@get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics (text format)",
    description="Request counts and durations by route and status, spaces by status, "
    "default-space fallbacks. Open (no key): serve it on a private network.",
    opt=OPEN | api({200: Content(TEXT, "text/plain")}),
)
async def metrics(state: State) -> Response[bytes]:
    gauges: GatewayMetrics = state.metrics
    counts = collections.Counter(r.status for r in bridge_of(state).registry.cached_all())
    for status in ("active", "deleting"):
        gauges.spaces.labels(status).set(counts.get(status, 0))
    return Response(content=exposition(gauges), status_code=200, media_type=METRICS_MEDIA_TYPE)


ROUTES = [health, ready, metrics]
