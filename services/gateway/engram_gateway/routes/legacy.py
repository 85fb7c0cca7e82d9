"""Legacy routes: the space from ``X-Memory-Space``, then ``?space=``, then
(while allowed) the default space; otherwise as the routes under a space."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath

from engram_contract.messages import ListResponse, Memory, RecallRequest, RecallResponse
from engram_gateway.answers import Remembered, Written
from engram_gateway.auth import LEGACY, READ, WRITE
from engram_gateway.openapi import Api, SchemaLike, api
from engram_gateway.openapi_rules import (
    DEPRECATION_HEADERS,
    MEMORY_SPACE_HEADER,
    MEMORY_SPACE_QUERY,
    idempotency_key_header,
)
from engram_gateway.routes.common import Cursor, IncludeVector, IncludeVectors, Limit
from engram_gateway.routes.memories import (
    MEMORIES_IN,
    READ_ERRORS,
    WRITE_ERRORS,
    forget_in,
    get_memory_in,
    list_memories_in,
    remember_in,
)
from engram_gateway.routes.recall import recall_in
from engram_gateway.spaces import resolve_space

_LEGACY = (
    "Legacy route: the space comes from the `X-Memory-Space` header, then `?space=`; "
    "without either it is a 400, or — while `ENGRAM_REQUIRE_EXPLICIT_SPACE=false` — the "
    "default space, with `Deprecation` and `Warning` headers. "
)


def legacy_api(
    ok: dict[int, SchemaLike], errors: tuple[int, ...], body: SchemaLike | None = None
) -> dict[str, Api]:
    """A legacy route's ``opt``: the space's header and query parameter, the
    deprecation headers of a default-space answer."""
    writes = 202 in ok
    return api(
        ok,
        body=body,
        errors=errors,
        headers=[MEMORY_SPACE_HEADER, *([idempotency_key_header()] if writes else [])],
        query=[MEMORY_SPACE_QUERY],
        response_headers=DEPRECATION_HEADERS,
    )


@post(
    "/api/v1/memories",
    tags=["legacy"],
    status_code=202,
    summary="Remember one memory or a batch (space from X-Memory-Space or ?space=)",
    description=_LEGACY + "Otherwise as `POST /api/v1/spaces/{space}/memories`.",
    opt=WRITE | LEGACY | legacy_api({202: Remembered}, WRITE_ERRORS, body=MEMORIES_IN),
)
async def legacy_remember(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    return await remember_in(resolve_space(request, None), request, state)


@get(
    "/api/v1/memories",
    tags=["legacy"],
    summary="Page through memories (space from X-Memory-Space or ?space=)",
    description=_LEGACY + "Otherwise as `GET /api/v1/spaces/{space}/memories`.",
    opt=READ | LEGACY | legacy_api({200: ListResponse}, READ_ERRORS),
)
async def legacy_list_memories(
    request: Request[Any, Any, Any],
    state: State,
    limit: Limit = 100,
    cursor: Cursor = None,
    include_embedding: IncludeVectors = False,
) -> Response[bytes]:
    return await list_memories_in(
        resolve_space(request, None), state, limit, cursor, include_embedding
    )


@get(
    "/api/v1/memories/{memory_id:str}",
    tags=["legacy"],
    summary="Get one memory (space from X-Memory-Space or ?space=)",
    description=_LEGACY + "Otherwise as `GET /api/v1/spaces/{space}/memories/{id}`.",
    opt=READ | LEGACY | legacy_api({200: Memory}, READ_ERRORS),
)
async def legacy_get_memory(
    memory_id: FromPath[str],
    request: Request[Any, Any, Any],
    state: State,
    include_embedding: IncludeVector = False,
) -> Response[bytes]:
    return await get_memory_in(resolve_space(request, None), memory_id, state, include_embedding)


@delete(
    "/api/v1/memories/{memory_id:str}",
    tags=["legacy"],
    status_code=202,
    summary="Forget a memory (space from X-Memory-Space or ?space=)",
    description=_LEGACY + "Otherwise as `DELETE /api/v1/spaces/{space}/memories/{id}`.",
    opt=WRITE | LEGACY | legacy_api({202: Written}, WRITE_ERRORS),
)
async def legacy_forget(
    memory_id: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[dict[str, Any]]:
    return await forget_in(resolve_space(request, None), memory_id, request, state)


@post(
    "/api/v1/recall",
    tags=["legacy"],
    status_code=200,
    summary="Recall memories (space from X-Memory-Space or ?space=)",
    description=_LEGACY + "Otherwise as `POST /api/v1/spaces/{space}/recall`.",
    opt=READ | LEGACY | legacy_api({200: RecallResponse}, READ_ERRORS, body=RecallRequest),
)
async def legacy_recall(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    return await recall_in(resolve_space(request, None), request, state)


ROUTES = [legacy_remember, legacy_list_memories, legacy_get_memory, legacy_forget, legacy_recall]
