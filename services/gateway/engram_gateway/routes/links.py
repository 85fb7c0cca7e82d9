"""Links: explicit associations between two memories of a space."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.params import FromPath

from engram_contract.messages import LinkIn
from engram_gateway.answers import Written
from engram_gateway.auth import WRITE
from engram_gateway.openapi import api
from engram_gateway.openapi_rules import idempotency_key_header
from engram_gateway.problems import parse_body
from engram_gateway.routes.common import bridge_of, idempotency_key
from engram_gateway.spaces import resolve_space


@post(
    "/api/v1/spaces/{space:str}/links",
    tags=["links"],
    status_code=202,
    summary="Link two memories (weight 0 unlinks them)",
    description="Body: `LinkIn` (`source`, `target`, `weight` 0..1, `kind` default "
    "`related`). Sets an explicit, undirected association that overrides the link "
    "Engram derived for the pair (similarity, time); recall's spreading activation "
    "follows it. `weight` 0 removes the explicit link (a derived one comes back). "
    "404 names the `source`/`target` that is not in the space; otherwise answers 202 "
    "`{seq}` once the link command is in the WAL. An `Idempotency-Key` header makes a "
    "retry store it once.",
    opt=WRITE
    | api(
        {202: Written},
        body=LinkIn,
        errors=[400, 404, 409, 503],
        headers=[idempotency_key_header()],
    ),
)
async def link(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[dict[str, Any]]:
    resolve_space(request, space)
    body = parse_body(LinkIn, await request.body())
    seq = await bridge_of(state).link(space, body, idempotency_key(request))
    return Response({"seq": seq}, status_code=202)


ROUTES = [link]
