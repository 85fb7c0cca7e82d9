"""What every route module shares: the bridge from the app state, raw JSON
answers, the ``Idempotency-Key`` header, a client's ``min_seq`` and the query
parameters of pages."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response
from litestar.datastructures import State
from litestar.params import QueryParameter

from engram_contract.errors import field_error
from engram_gateway.bridge import NatsBridge

JSON = "application/json"
Limit = Annotated[int, QueryParameter(ge=1, le=1000, description="Page size.")]
Cursor = Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page.")]
IncludeVectors = Annotated[bool, QueryParameter(description="Include vectors.")]
IncludeVector = Annotated[bool, QueryParameter(description="Include the vector.")]


def bridge_of(state: State) -> NatsBridge:
    """The app's :class:`NatsBridge` (made in its lifespan)."""
    bridge: NatsBridge = state.bridge
    return bridge


def raw_json(data: bytes, status: int = 200) -> Response[bytes]:
    """An answer that is JSON already (a worker's reply, forwarded as it is)."""
    return Response(content=data, status_code=status, media_type=JSON)


async def check_min_seq(bridge: NatsBridge, space: str, min_seq: int | None) -> None:
    """:meth:`NatsBridge.check_min_seq` (the routes' name for it)."""
    await bridge.check_min_seq(space, min_seq)


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    """The ``Idempotency-Key`` header (1-128 characters), if sent."""
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 128:
        raise field_error("Idempotency-Key", "must be 1-128 characters")
    return key
