"""Recall: memories by a text or vector cue."""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.params import FromPath
from pydantic import ValidationError

from engram_contract.messages import (
    QueryStruct,
    RecallRequest,
    RecallResponse,
    RecallWire,
    parse_query,
)
from engram_contract.messages.query_structs import MODEL_OF
from engram_gateway.auth import READ
from engram_gateway.openapi import Link, api
from engram_gateway.problems import parse_body
from engram_gateway.routes.common import bridge_of, check_min_seq, raw_json
from engram_gateway.spaces import resolve_space

Q = TypeVar("Q", bound=QueryStruct)


@post(
    "/api/v1/spaces/{space:str}/recall",
    tags=["recall"],
    status_code=200,
    summary="Recall memories by text or vector cue",
    description="Body: `RecallRequest` (the cue: `query` text, or a vector as `embedding` "
    "or `embedding_b64`, base64 of little-endian float32). `mode`: `similarity` (the "
    "nearest memories), `spreading` (default: activation spreads from the `seed_k` "
    "nearest along the "
    "association graph, `max_hops`, `hop_decay`, `threshold`, `max_fanout`) or `hybrid` "
    "(`hybrid_weight` of spreading, the rest similarity). `tags`, `since`, `until` "
    "filter; `trace` adds each result's activation path. Scores use confidence decayed "
    "since the last recall; returned memories count one more recall (`reinforce`, "
    "written through the WAL shortly after). `consistency`: `read_your_writes` "
    "(default: waits for this gateway's writes), `strong` (waits for the stream's last "
    "sequence), `eventual` (no wait).",
    opt=READ
    | api(
        {200: RecallResponse},
        body=RecallRequest,
        errors=[400, 404, 503, 504],
        links={
            200: {
                "get_first": Link(
                    "get_memory",
                    {
                        "space": "$request.path.space",
                        "memory_id": "$response.body#/results/0/memory/id",
                    },
                )
            }
        },
    ),
)
async def recall(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[bytes]:
    return await recall_in(resolve_space(request, space), request, state)


async def recall_in(space: str, request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    """Recall from ``space`` with the body's cue (also the legacy route's)."""
    body = await request.body()
    req = parse_query_body(RecallWire, body)
    bridge = bridge_of(state)
    if req.min_seq is not None and req.consistency != "eventual":  # (eventual ignores it)
        await check_min_seq(bridge, space, req.min_seq)
    # the body validated is the body forwarded; the worker's answer is the response
    return raw_json(await bridge.recall(space, req, body))


def parse_query_body(struct: type[Q], raw: bytes) -> Q:
    """A query body, validated once (msgspec); a body refused gets the problem
    every route gives (the model names the fields, as :func:`parse_body` does)."""
    try:
        return parse_query(struct, raw)
    except ValidationError:
        parse_body(MODEL_OF[struct], raw)  # raises the 400 naming the fields
        raise


ROUTES = [recall]
