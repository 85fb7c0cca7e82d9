"""The gateway's composition root: ``create_app(settings)``."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any, cast

from litestar import Litestar
from litestar.datastructures import State
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry

from engram_contract.settings import GatewaySettings
from engram_gateway.asyncapi import asyncapi_routes
from engram_gateway.auth import Gatekeeper, RateLimiter, authorize, keys_required
from engram_gateway.bridge import NatsBridge
from engram_gateway.grpc_api.server import start_grpc_api
from engram_gateway.metrics import GatewayMetrics, gateway_metrics
from engram_gateway.openapi import openapi_config
from engram_gateway.problems import EXCEPTION_HANDLERS
from engram_gateway.processes import shared_state
from engram_gateway.routes import ROUTES
from engram_gateway.spaces import SpaceResolver, deprecation_headers
from engram_nats.connection import connect
from engram_nats.keys import KeyStore
from engram_nats.liveness import Liveness
from engram_nats.membership import Membership
from engram_nats.registry import SpaceRegistry
from engram_nats.streams import ensure_events_stream

log = logging.getLogger(__name__)
#: the ``route`` label of a request no route matched (never the raw path)
UNMATCHED = "__unmatched__"
_STARTED = "engram.started"


def _timed(app: ASGIApp) -> ASGIApp:
    """Middleware: note when a routed request started (for its duration)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        cast("dict[str, Any]", scope).setdefault(_STARTED, time.perf_counter())
        await app(scope, receive, send)

    return middleware


def request_counter(metrics: GatewayMetrics) -> Any:
    """A ``before_send`` hook: counts every HTTP response by method, route template
    and status, and observes the duration of routed ones. It sees the responses
    of exception handlers and of unmatched routes too (it runs outside routing).
    The labelled children are looked up once per label set (``labels()`` takes a
    lock and builds a key on every call)."""
    counters: dict[tuple[str, str, str], Any] = {}
    histograms: dict[tuple[str, str], Any] = {}

    async def count(message: Message, scope: Scope) -> None:
        raw = cast("dict[str, Any]", scope)
        if raw["type"] != "http":
            return
        if message["type"] == "http.response.start":
            raw["engram.status"] = str(message["status"])
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            method, route = raw["method"], raw.get("path_template") or UNMATCHED
            key = (method, route, raw.get("engram.status", ""))
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = metrics.requests.labels(*key)
            counter.inc()
            started = raw.get(_STARTED)
            if started is not None:
                histogram = histograms.get(key[:2])
                if histogram is None:
                    histogram = histograms[key[:2]] = metrics.request_seconds.labels(*key[:2])
                histogram.observe(time.perf_counter() - started)

    return count


def create_app(settings: GatewaySettings | None = None) -> Litestar:
    """Build the HTTP app; connections are made in its lifespan, not here."""
    settings = settings or GatewaySettings()
    metrics = gateway_metrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        nc = await connect(settings.nats_url, "engram-gateway")
        js = nc.jetstream()
        registry = SpaceRegistry(js, replicas=settings.stream_replicas)
        await registry.open()
        await ensure_events_stream(
            js,
            max_age=settings.events_max_age,
            replicas=settings.stream_replicas,
            max_consumers=settings.events_max_consumers,
        )
        # the live workers: a query whose host is lost while it waits is asked again
        membership = Membership(js, ttl=settings.worker_ttl, replicas=settings.stream_replicas)
        await membership.start()
        bridge = NatsBridge(nc, registry, settings, membership)  # follows the registry's changes
        await registry.start_watch()
        await registry.wait_loaded()
        await bridge.spaces.create_or_get(settings.default_space)
        keys = KeyStore(js, replicas=settings.stream_replicas)
        await keys.start()
        if settings.admin_key:
            record = await keys.set_operator_key(settings.admin_key)
            log.info("gateway: ENGRAM_ADMIN_KEY is admin key %s", record.id)
        limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        app.state.auth = Gatekeeper(keys, required=keys_required(settings), limiter=limiter)
        _say_how_keys_are_checked(settings, keys)
        app.state.bridge = bridge
        # NATS gone: requests answer 503 within ENGRAM_NATS_UNAVAILABLE_AFTER
        bridge.liveness = liveness = Liveness(nc, settings.nats_unavailable_after)
        liveness.start()
        grpc = await start_grpc_api(settings, app.state) if settings.grpc_port else None
        try:
            yield
        finally:
            if grpc is not None:
                await grpc.stop()
            await liveness.stop()
            await keys.close()
            await registry.close()
            await membership.close()
            try:
                await nc.drain()
            except Exception as exc:  # the broker may already be gone
                log.warning("gateway: NATS drain failed on shutdown: %r", exc)

    return Litestar(
        route_handlers=[*ROUTES, *asyncapi_routes(settings)],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[_timed],
        guards=[authorize],
        before_send=[request_counter(metrics), deprecation_headers],
        state=State({"metrics": metrics, "spaces": SpaceResolver(settings, metrics)}),
        request_max_body_size=settings.max_body_bytes,
        # logging is the process's to configure (engram_cli.main), not the app's:
        # Litestar's default config would replace the root logger's handlers
        logging_config=None,
        openapi_config=openapi_config(keys_required(settings)),
    )


def _say_how_keys_are_checked(settings: GatewaySettings, keys: KeyStore) -> None:
    if not keys_required(settings):
        if settings.auth == "off":
            log.warning("gateway: API keys are off (ENGRAM_AUTH=off): any client may do anything")
        else:
            log.info(
                "gateway: API keys not required: listening on loopback %s (ENGRAM_AUTH=auto); "
                "a key sent is checked",
                settings.http_host,
            )
        return
    why = (
        "ENGRAM_AUTH=required"
        if settings.auth == "required"
        else (f"listening on {settings.http_host}, not loopback (ENGRAM_AUTH=auto)")
    )
    log.info("gateway: API keys required (%s)", why)
    if not keys.any_keys():
        log.warning(
            "gateway: keys are required but none exists: set ENGRAM_ADMIN_KEY to make the "
            "first one, or every request will be refused"
        )


def create_app_from_environment() -> Litestar:
    """The app of one of several gateway processes: each reads its settings from the
    environment it inherited (uvicorn's ``factory``) and logs as ``engram gateway``
    does (a spawned process starts with logging unconfigured)."""
    settings = GatewaySettings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",  # as engram_cli.main
        stream=sys.stderr,
    )
    return create_app(settings)


def main(settings: GatewaySettings) -> None:
    """Serve the API: uvicorn on uvloop and the httptools parser, in
    ``settings.http_workers`` processes sharing one listening socket."""
    import uvicorn

    options: dict[str, Any] = {
        "host": settings.http_host,
        "port": settings.http_port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "loop": "uvloop" if _has("uvloop") else "asyncio",
        "http": "httptools",
    }
    if settings.http_workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # several processes: each builds its app from the environment, which names the
    # directory they share (read-your-writes positions, metrics)
    with shared_state(settings.max_spaces) as env:
        os.environ.update(env)
        os.environ.update(
            {
                f"ENGRAM_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
                for k, v in settings.model_dump(mode="json").items()
                if v is not None  # unset stays unset ("null" is no admin key)
            }
        )
        uvicorn.run(
            f"{__name__}:create_app_from_environment",
            factory=True,
            workers=settings.http_workers,
            **options,
        )


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
