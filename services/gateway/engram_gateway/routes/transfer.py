"""Moving a space's data: ``GET …/export`` streams it as NDJSON, ``POST …/import``
writes such a stream into a space (see docs/api.md#export-and-import).

Export pages through the worker's ``export`` query (each page fits in one NATS
message) and streams every page as it comes, so the gateway holds one page at a
time. Import reads the body as it arrives and validates every line before it
writes anything; the WAL messages it will publish wait in a spooled temporary
file (memory up to a few MiB, disk beyond), then go out pipelined, in order,
memories first and links last.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from engram_contract.errors import (
    EngramError,
    field_error,
)
from engram_contract.messages import ImportResult
from engram_gateway.auth import READ, WRITE
from engram_gateway.openapi import Content, api
from engram_gateway.openapi_rules import idempotency_key_header
from engram_gateway.routes.common import bridge_of
from engram_gateway.spaces import resolve_space
from engram_gateway.transfer import checked_import_key, checked_tags, open_export, run_import

NDJSON = "application/x-ndjson"
#: a longer line is refused (a memory is at most 100 KiB of text and 4096 floats)
MAX_LINE_BYTES = 4 * 1024 * 1024
#: lines validated per step (in a thread, so the event loop keeps serving)
VALIDATE_CHUNK = 256

#: an export, as the body of an answer or of an import
EXPORT_LINES = Content(
    {
        "type": "string",
        "contentMediaType": NDJSON,
        "description": "One JSON document per line: the header (`engram_export`, `space`, "
        "`exported_at`, `applied_seq`, `tags`, `settings`), one memory per line (`id`, "
        "`content`, `embedding_b64`, `confidence`, `tags`, `metadata`, `occurred_at`, `kind`, "
        '`members`, `links`…), then `{"end": {"memories", "links"}}` '
        "(docs/api.md#export-and-import).",
    },
    NDJSON,
)

Tags = Annotated[
    list[str] | None,
    QueryParameter(description="Only memories carrying this tag (repeat: all of them)."),
]


def _line(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


# -- export -----------------------------------------------------------------


@get(
    "/api/v1/spaces/{space:str}/export",
    tags=["transfer"],
    summary="Export a space's memories as NDJSON",
    description="Streams `application/x-ndjson`: a header line (format version, space "
    "settings), one line per live memory in stream order (embedding as base64 float32, "
    "explicit links to memories exported before it, a semantic memory's members), then "
    '`{"end": {"memories", "links"}}`. `?tag=T` (repeatable) exports only memories '
    "carrying all of them. `POST …/import` takes it back.",
    opt=READ
    | api(
        {200: EXPORT_LINES},
        errors=[400, 404, 503, 504],
        response_headers={
            "Content-Disposition": {
                "description": '`attachment; filename="<space>.ndjson"`.',
                "schema": {"type": "string"},
            }
        },
    ),
)
async def export_space(
    space: FromPath[str], request: Request[Any, Any, Any], state: State, tag: Tags = None
) -> Stream:
    space = resolve_space(request, space)
    # the first page before the response starts: an unknown space, no worker or a
    # timeout is still a problem+json answer
    export = await open_export(bridge_of(state), space, checked_tags(tag))

    async def lines() -> AsyncIterator[bytes]:
        yield export.header.model_dump_json().encode() + b"\n"
        try:
            async for page in export.pages():
                yield b"".join(_line(memory) for memory in page)
        except EngramError as exc:
            # the status line is long gone: say it in the stream (an import of
            # this body is refused; the CLI reports it)
            yield _line({"error": {"status": exc.status, "title": exc.title, "detail": exc.detail}})
            return
        yield _line({"end": export.end().model_dump()})

    return Stream(
        lines(),
        media_type=NDJSON,
        headers={"Content-Disposition": f'attachment; filename="{space}.ndjson"'},
    )


# -- import -----------------------------------------------------------------


async def _numbered_lines(
    request: Request[Any, Any, Any],
) -> AsyncIterator[list[tuple[int, bytes]]]:
    """The body's lines as they arrive, numbered from 1, a chunk at a time."""
    buf = bytearray()
    n = 0
    chunk: list[tuple[int, bytes]] = []
    async for part in request.stream():
        buf += part
        start = 0
        while (end := buf.find(b"\n", start)) != -1:
            n += 1
            chunk.append((n, bytes(buf[start:end])))
            start = end + 1
        del buf[:start]
        if len(buf) > MAX_LINE_BYTES:
            raise field_error(f"line {n + 1}", f"longer than {MAX_LINE_BYTES} bytes")
        if len(chunk) >= VALIDATE_CHUNK:
            yield chunk
            chunk = []
    if buf.strip():
        chunk.append((n + 1, bytes(buf)))
    if chunk:
        yield chunk


@post(
    "/api/v1/spaces/{space:str}/import",
    tags=["transfer"],
    status_code=200,
    request_max_body_size=None,
    summary="Import an export (NDJSON) into a space",
    description="Body: what `GET …/export` streams. Keeps ids, content, embeddings, "
    "confidence, tags, metadata, occurred_at, kind and explicit links. Every line is "
    "validated before anything is written: a bad line is a 400 naming it, and nothing "
    "is imported. The space must exist (404), or `?create=true` creates it with the "
    "export's settings. Answers `{space, created, memories, links, seq}`.",
    opt=WRITE
    | api(
        {200: ImportResult},
        body=EXPORT_LINES.optional("Empty: nothing to import (into a space that exists)."),
        errors=[400, 404, 409, 503],
        headers=[idempotency_key_header(100)],
    ),
)
async def import_space(
    space: FromPath[str],
    request: Request[Any, Any, Any],
    state: State,
    create: Annotated[
        bool, QueryParameter(description="Create the space from the export's settings.")
    ] = False,
) -> Response[dict[str, Any]]:
    space = resolve_space(request, space)
    key = checked_import_key(request.headers.get("idempotency-key"))
    result = await run_import(bridge_of(state), space, create, key, _numbered_lines(request))
    return Response(result.model_dump(mode="json"), status_code=200)


ROUTES = [export_space, import_space]
