"""Spaces: create (or get), list, show, delete."""

from __future__ import annotations

import json
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath

from engram_contract.messages import CreateSpace, SpaceRecord
from engram_gateway.answers import SpaceDeleted, SpaceDetail, SpaceList
from engram_gateway.auth import ADMIN, READ, audit_log, principal_of
from engram_gateway.openapi import Link, api
from engram_gateway.problems import parse_body
from engram_gateway.routes.common import bridge_of
from engram_gateway.spaces import checked_space, resolve_space

_IN_IT = {"space": "$response.body#/id"}
#: what a space's record leads to
SPACE_LINKS = {
    "show": Link("show_space", _IN_IT),
    "remember": Link("remember", _IN_IT),
    "list_memories": Link("list_memories", _IN_IT),
    "recall": Link("recall", _IN_IT),
    "link": Link("link", _IN_IT),
    "forget_many": Link("forget_many", _IN_IT),
    "consolidate": Link("consolidate", _IN_IT),
    "import": Link("import_space", _IN_IT),
    "export": Link("export_space", _IN_IT),
    "delete": Link("delete_space", _IN_IT),
}


@post(
    "/api/v1/spaces",
    tags=["spaces"],
    summary="Create a space (or get the existing one)",
    description="Body: `CreateSpace` (`id`, optional `dim`, `metric`, `embedder`, `links`, "
    "`decay`, `consolidation`). 201 when created, 200 when it already existed with the "
    "same settings.",
    opt=ADMIN
    | api(
        {201: SpaceRecord, 200: SpaceRecord},
        body=CreateSpace,
        errors=[400, 409, 503],
        links={201: SPACE_LINKS, 200: SPACE_LINKS},
    ),
)
async def create_space(request: Request[Any, Any, Any], state: State) -> Response[dict[str, Any]]:
    body = parse_body(CreateSpace, await request.body())
    checked_space(body.id)
    rec, created = await bridge_of(state).create_space(body)
    if created:
        audit_log(request, "space.create", space=rec.id)
    return Response(rec.model_dump(mode="json"), status_code=201 if created else 200)


@get("/api/v1/spaces", tags=["spaces"], summary="List spaces", opt=READ | api({200: SpaceList}))
async def list_spaces(request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
    """Every active space an admin (or a request without keys) may see; a scoped
    key sees only its own."""
    principal = principal_of(request)
    recs = bridge_of(state).registry.cached_all()
    return {
        "spaces": [
            r.model_dump(mode="json")
            for r in recs
            if r.status == "active" and principal.may("read", r.id)
        ]
    }


@get(
    "/api/v1/spaces/{space:str}",
    tags=["spaces"],
    summary="A space's record with its memory count and applied sequence",
    opt=READ | api({200: SpaceDetail}, errors=[400, 404, 503, 504]),
)
async def show_space(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> dict[str, Any]:
    bridge = bridge_of(state)
    rec = await bridge.spaces.for_read(resolve_space(request, space))
    stats = json.loads(await bridge.stats(space))
    return {
        **rec.model_dump(mode="json"),
        "memories": stats["memories"],
        "applied_seq": stats["applied_seq"],
    }


@delete(
    "/api/v1/spaces/{space:str}",
    tags=["spaces"],
    status_code=202,
    summary="Delete a space and everything in it",
    description="The record turns `deleting` (writes 409, reads 404), workers unload the "
    "space, its WAL stream is deleted, then the record: the id is free again and "
    "creating it gives an empty space.",
    opt=ADMIN | api({202: SpaceDeleted}, errors=[400, 404, 409, 503]),
)
async def delete_space(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[dict[str, Any]]:
    await bridge_of(state).delete_space(resolve_space(request, space))
    audit_log(request, "space.delete", space=space)
    return Response({"id": space, "status": "deleted"}, status_code=202)


ROUTES = [create_space, list_spaces, show_space, delete_space]
