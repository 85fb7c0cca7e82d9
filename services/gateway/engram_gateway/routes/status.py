"""Status: every space's WAL position, hosting worker, lag and snapshot."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, get
from litestar.datastructures import State
from litestar.params import QueryParameter

from engram_gateway.routes.common import bridge_of, raw_json
from engram_gateway.spaces import checked_space


@get(
    "/api/v1/status",
    tags=["ops"],
    summary="Every space's WAL position, hosting worker, lag, snapshot, or why it failed",
)
async def status(
    state: State,
    space: Annotated[str | None, QueryParameter(description="Only this space.")] = None,
) -> Response[bytes]:
    report = await bridge_of(state).status(None if space is None else checked_space(space))
    return raw_json(report.model_dump_json().encode())


ROUTES = [status]
