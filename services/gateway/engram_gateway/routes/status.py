"""Status: every space's WAL position, hosting worker, lag and snapshot."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import QueryParameter

from engram_contract.messages import StatusResponse
from engram_gateway.auth import READ, require
from engram_gateway.openapi import api
from engram_gateway.routes.common import bridge_of, raw_json
from engram_gateway.spaces import checked_space


@get(
    "/api/v1/status",
    tags=["ops"],
    summary="Every space's WAL position, hosting worker, lag, snapshot, or why it failed",
    opt=READ | api({200: StatusResponse}, errors=[400, 404, 503, 504]),
)
async def status(
    request: Request[Any, Any, Any],
    state: State,
    space: Annotated[str | None, QueryParameter(description="Only this space.")] = None,
) -> Response[bytes]:
    """A key scoped to spaces asks about one of them (``?space=``); the whole
    deployment's status (every space, the workers, the NATS cluster) is an admin's."""
    if space is not None:
        checked_space(space)
    require(request, "read", space)
    report = await bridge_of(state).status(space)
    return raw_json(report.model_dump_json().encode())


ROUTES = [status]
