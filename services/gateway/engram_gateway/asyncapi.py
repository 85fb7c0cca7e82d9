"""``GET /asyncapi``: the AsyncAPI document of the ``spaces.<id>.…`` subjects, for
agents that publish and request on NATS themselves (see
:mod:`engram_contract.asyncapi`)."""

from __future__ import annotations

import asyncio
import json
from functools import cache

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from engram_contract import __version__
from engram_contract.asyncapi import asyncapi_document, public_servers
from engram_contract.settings import GatewaySettings
from engram_gateway.answers import JSON_OBJECT
from engram_gateway.auth import READ
from engram_gateway.openapi import api


def asyncapi_routes(settings: GatewaySettings) -> list[HTTPRouteHandler]:
    """The AsyncAPI route of an app. The document is built on the first request
    (FastStream describes the subjects; nothing connects) and kept."""

    @cache
    def document() -> bytes:
        doc = asyncapi_document(public_servers(settings.nats_url), version=__version__)
        return json.dumps(doc).encode()

    @get(
        ["/asyncapi", "/asyncapi.json"],
        tags=["ops"],
        summary="AsyncAPI 3.0 document of the NATS subjects (commands, queries, events)",
        description="What an agent publishes on `spaces.<space>.<verb>`, requests on "
        "`spaces.<space>.q.<name>` (request and reply schemas) and receives on "
        "`spaces.<space>.evt.<kind>`, with every payload's JSON schema.",
        opt=READ | api({200: JSON_OBJECT}),
    )
    async def asyncapi() -> Response[bytes]:
        # in a thread: the first call builds the document (and imports FastStream)
        return Response(await asyncio.to_thread(document), media_type="application/json")

    return [asyncapi]
