"""API keys (admin only): create one (its secret shown once), list them, revoke one."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath

from engram_contract.errors import NotFound, field_error
from engram_contract.keys import KeyInfo, KeyRequest, NewKey
from engram_gateway.answers import KeyList
from engram_gateway.auth import ADMIN, Gatekeeper, audit_log
from engram_gateway.openapi import Link, api
from engram_gateway.openapi_rules import KEY_ID_PATTERN
from engram_gateway.problems import parse_body

_KEY_ID = re.compile(KEY_ID_PATTERN)


def _gate(state: State) -> Gatekeeper:
    gate: Gatekeeper = state.auth
    return gate


@post(
    "/api/v1/keys",
    tags=["keys"],
    summary="Create an API key (shown once)",
    description='Body: `{"spaces": ["alpha"], "role": "read" | "write"}` or `{"admin": true}` '
    '(optional `label`). 201 with `{"id", "key", "spaces", "role", "created_at"}`: the only '
    "time the key itself is shown; only its hash is stored.",
    opt=ADMIN
    | api(
        {201: NewKey},
        body=KeyRequest,
        errors=[400, 503],
        links={201: {"revoke": Link("revoke_key", {"key_id": "$response.body#/id"})}},
    ),
)
async def create_key(request: Request[Any, Any, Any], state: State) -> Response[dict[str, Any]]:
    body = parse_body(KeyRequest, await request.body())
    try:
        role = body.resolved_role()
    except ValueError as exc:
        raise field_error("role" if not body.admin else "admin", str(exc)) from None
    record, key = await _gate(state).keys.create(role, list(body.spaces), body.label)
    audit_log(request, "key.create", key=record.id, role=role, spaces=record.spaces)
    new = NewKey(
        key=key, **record.model_dump(include={"id", "role", "spaces", "label", "created_at"})
    )
    return Response(new.model_dump(mode="json"), status_code=201)


@get(
    "/api/v1/keys",
    tags=["keys"],
    summary="List API keys (never their secrets)",
    opt=ADMIN | api({200: KeyList}),
)
async def list_keys(state: State) -> dict[str, Any]:
    keys = _gate(state).keys.list()
    return {"keys": [KeyInfo.of(r).model_dump(mode="json") for r in keys]}


@delete(
    "/api/v1/keys/{key_id:str}",
    tags=["keys"],
    status_code=204,
    summary="Revoke an API key (refused by every gateway within a second)",
    opt=ADMIN | api({204: None}, errors=[404, 503]),
)
async def revoke_key(key_id: FromPath[str], request: Request[Any, Any, Any], state: State) -> None:
    # an id no key can have is not looked up (the KV store refuses such keys)
    if not _KEY_ID.fullmatch(key_id) or not await _gate(state).keys.revoke(key_id):
        raise NotFound(
            404, "Key not found", f"no API key has the id {key_id!r}", slug="key-not-found"
        )
    audit_log(request, "key.revoke", key=key_id)


ROUTES = [create_key, list_keys, revoke_key]
