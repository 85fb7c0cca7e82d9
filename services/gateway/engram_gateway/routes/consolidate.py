"""Consolidation: densely linked episodic memories become semantic ones."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.params import FromPath

from engram_contract.messages import ConsolidateRequest, ConsolidateResponse
from engram_gateway.auth import WRITE
from engram_gateway.openapi import Content, api
from engram_gateway.problems import parse_body
from engram_gateway.routes.common import bridge_of, raw_json
from engram_gateway.spaces import resolve_space


@post(
    "/api/v1/spaces/{space:str}/consolidate",
    tags=["consolidation"],
    status_code=200,
    summary="Consolidate densely linked memories into semantic ones",
    description="Body (optional): `ConsolidateRequest` (`dry_run`, `min_seq`). The worker "
    "finds groups of densely linked episodic memories (the space's `consolidation` "
    "settings) and writes one `consolidate` command per group into the WAL; folding it "
    "makes a `semantic` memory linked to its members (`consolidated`, weight 1). "
    "Answers `{space, applied_seq, groups: [{memory_id, members}], seq}`; `seq` is the "
    "last command written (null: none), and a following read-your-writes recall sees "
    "the new memories. Memories already consolidated are not grouped again. "
    "`dry_run`: only report the groups, write nothing.",
    opt=WRITE
    | api(
        {200: ConsolidateResponse},
        body=Content(ConsolidateRequest, required=False, description="Empty: the defaults."),
        errors=[400, 404, 409, 503, 504],
    ),
)
async def consolidate(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[bytes]:
    resolve_space(request, space)
    bridge = bridge_of(state)
    raw = await request.body()
    req = parse_body(ConsolidateRequest, raw) if raw.strip() else ConsolidateRequest()
    return raw_json(await bridge.consolidate(space, req))


ROUTES = [consolidate]
