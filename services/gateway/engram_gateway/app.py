"""The gateway's composition root: ``create_app(settings)``."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from engram_common import __version__
from engram_common.natsio import SpaceRegistry, connect
from engram_common.settings import GatewaySettings
from engram_gateway.bridge import NatsBridge
from engram_gateway.problems import EXCEPTION_HANDLERS
from engram_gateway.routes import ROUTES

log = logging.getLogger(__name__)


def create_app(settings: GatewaySettings | None = None) -> Litestar:
    """Build the HTTP app; connections are made in its lifespan, not here."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        nc = await connect(settings.nats_url, "engram-gateway")
        js = nc.jetstream()
        registry = SpaceRegistry(js, replicas=settings.stream_replicas)
        await registry.open()
        bridge = NatsBridge(nc, js, registry, settings)
        registry.on_change(bridge.on_space_change)
        await registry.start_watch()
        await registry.wait_loaded()
        await bridge.create_or_get(settings.default_space)
        app.state.bridge = bridge
        try:
            yield
        finally:
            await registry.close()
            try:
                await nc.drain()
            except Exception as exc:  # the broker may already be gone
                log.warning("gateway: NATS drain failed on shutdown: %r", exc)

    return Litestar(
        route_handlers=ROUTES,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Engram",
            version=__version__,
            description="Cognitive memory for AI agents: private memory spaces on NATS JetStream.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
        ),
    )


def main(settings: GatewaySettings) -> None:
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
