"""The rules the OpenAPI document states that Litestar cannot see: the id
patterns and lengths of path and query parameters, the request headers routes
read, rules the models check in validators (said in JSON Schema where it can
be), and why each error status happens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engram_contract.ids import MEMORY_ID_PATTERN, SPACE_ID_PATTERN
from engram_contract.keys import ENV_ADMIN_ID
from engram_contract.messages import MAX_TAG_CHARS, MAX_TAGS
from engram_gateway.events import EVENT_KINDS

#: the id of a key made by ``engram key create`` (12 hex digits), or the operator's
KEY_ID_PATTERN = rf"^([0-9a-f]{{12}}|{ENV_ADMIN_ID})$"

_KINDS = "|".join(EVENT_KINDS)

#: why each error status happens (the response's description)
WHEN: dict[int, str] = {
    400: "Invalid input: an invalid space or memory id, body, field or header; malformed "
    "JSON (`errors` names each field).",
    401: "No API key, or one that is unknown, revoked or malformed, where keys are required.",
    403: "The key's role or spaces do not cover the request (the same answer whether another "
    "space exists or not).",
    404: "Not found: the space, memory or key does not exist.",
    409: "Conflict: the space exists with other settings, is being deleted, or a limit or "
    "quota is reached.",
    413: "The request body is larger than ENGRAM_MAX_BODY_BYTES.",
    429: "The key is over its rate limit (ENGRAM_RATE_LIMIT); retry after Retry-After seconds.",
    503: "Unavailable: no worker serves the space, NATS is unreachable, or a write was not "
    "acknowledged; retrying later may succeed.",
    504: "The worker did not answer in time (ENGRAM_QUERY_TIMEOUT, ENGRAM_APPLY_WAIT_TIMEOUT).",
}


@dataclass(frozen=True)
class Header:
    """A request header a route reads."""

    name: str
    schema: Mapping[str, Any]
    description: str


SPACE_ID: dict[str, Any] = {
    "type": "string",
    "pattern": SPACE_ID_PATTERN,
    "minLength": 3,
    "maxLength": 64,
    "description": "3-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit.",
}
MEMORY_ID: dict[str, Any] = {
    "type": "string",
    "pattern": MEMORY_ID_PATTERN,
    "minLength": 1,
    "maxLength": 128,
    "description": "1-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '@' or '-', starting "
    "with a letter or digit.",
}
KEY_ID: dict[str, Any] = {
    "type": "string",
    "pattern": KEY_ID_PATTERN,
    "minLength": 9,
    "maxLength": 12,
    "description": "A key's id: 12 hex digits (`egk_<id>_…`), or `env-admin` (ENGRAM_ADMIN_KEY).",
}
PATH_PARAMETERS = {"space": SPACE_ID, "memory_id": MEMORY_ID, "key_id": KEY_ID}
#: query parameters whose rules the handler checks itself (Litestar sees a plain string)
QUERY_PARAMETERS: dict[str, dict[str, Any]] = {
    "space": SPACE_ID,
    "tag": {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_TAG_CHARS},
        "maxItems": MAX_TAGS,
    },
    "types": {
        "type": "string",
        "pattern": rf"^\s*({_KINDS})?(\s*,\s*({_KINDS})?)*\s*$",
    },
    "last_event_id": {"type": "string", "pattern": r"^\s*[0-9]*\s*$"},
}
BASE64 = r"^[A-Za-z0-9+/]*={0,2}$"
#: rules the models check in code, not in their JSON schema: (component, property) → schema
PROPERTY_RULES: dict[tuple[str, str], dict[str, Any]] = {
    ("CreateSpace", "id"): SPACE_ID,
    ("MemoryIn", "embedding_b64"): {
        "anyOf": [{"type": "string", "pattern": BASE64}, {"type": "null"}],
        "default": None,
        "description": "Base64 of little-endian float32 (instead of `embedding`).",
    },
    ("RecallRequest", "embedding_b64"): {
        "anyOf": [{"type": "string", "pattern": BASE64}, {"type": "null"}],
        "default": None,
        "description": "Base64 of little-endian float32 (instead of `embedding`).",
    },
}
#: a key request is one of two shapes (``KeyRequest.resolved_role``)
KEY_REQUEST_SHAPES = [
    {
        "title": "scoped key",
        "properties": {"spaces": {"minItems": 1}, "role": {"enum": ["read", "write"]}},
        "required": ["spaces", "role"],
    },
    {
        "title": "admin key",
        "properties": {"admin": {"const": True}, "spaces": {"maxItems": 0}},
        "required": ["admin"],
    },
]


def idempotency_key_header(max_chars: int = 128) -> Header:
    return Header(
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": max_chars},
        "A retry with the same key stores the same thing once and answers the same.",
    )


MEMORY_SPACE_HEADER = Header(
    "X-Memory-Space", SPACE_ID, "The memory space (before `?space=` and the default space)."
)
MEMORY_SPACE_QUERY = Header("space", SPACE_ID, "The memory space, when no X-Memory-Space is sent.")
DEPRECATION_HEADERS: dict[str, dict[str, Any]] = {
    "Deprecation": {
        "description": "`true` when the request named no space and the default space served it.",
        "schema": {"type": "string"},
    },
    "Warning": {
        "description": "Says which space served the request and how to name one.",
        "schema": {"type": "string"},
    },
}


RETRY_AFTER = {
    "description": "Seconds after which a retry may succeed.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
