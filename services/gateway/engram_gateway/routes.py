"""HTTP routes. Thin: validate, then hand over to the bridge."""

from __future__ import annotations

import asyncio
import collections
import json
import re
from typing import Annotated, Any

import numpy as np
from litestar import Request, Response, delete, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter
from litestar.response import ServerSentEvent
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engram_contract.embedders import Embedder, get_embedder
from engram_contract.ids import (
    MEMORY_ID_EXPECTED,
    MEMORY_ID_RE,
    new_id,
)
from engram_contract.messages import (
    ConsolidateRequest,
    ConsolidateResponse,
    CreateSpace,
    ForgetBatch,
    ForgetCommand,
    GetRequest,
    LinkCommand,
    LinkIn,
    ListRequest,
    MemoryBatch,
    MemoryIn,
    RecallRequest,
    RememberCommand,
    SpaceRecord,
    StatsRequest,
)
from engram_gateway.bridge import NatsBridge
from engram_gateway.events import EVENT_KINDS, EventFeed, parse_last_event_id, parse_types
from engram_gateway.metrics import GatewayMetrics
from engram_gateway.problems import Problem, field_problem, parse_body
from engram_gateway.spaces import checked_space, resolve_space
from engram_gateway.transfer import ROUTES as TRANSFER_ROUTES
from engram_nats.commands import FieldInvalid, remember_commands, to_embed

JSON = "application/json"
Limit = Annotated[int, QueryParameter(ge=1, le=1000, description="Page size.")]
Cursor = Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page.")]
IncludeVectors = Annotated[bool, QueryParameter(description="Include vectors.")]
_BATCH = re.compile(rb'\s*\{\s*"memories"\s*:')


def _bridge(state: State) -> NatsBridge:
    bridge: NatsBridge = state.bridge
    return bridge


def _raw(data: bytes, status: int = 200) -> Response[bytes]:
    return Response(content=data, status_code=status, media_type=JSON)


# -- health ---------------------------------------------------------------


@get("/health", tags=["ops"], summary="Liveness: the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", tags=["ops"], summary="Readiness: NATS connected and registry loaded")
async def ready(state: State) -> Response[dict[str, Any]]:
    bridge = _bridge(state)
    checks = {
        "nats_connected": bool(bridge.nc.is_connected),
        "registry_loaded": bridge.registry.loaded.is_set(),
    }
    ok = all(checks.values())
    return Response(
        {"status": "ready" if ok else "not ready", **checks}, status_code=200 if ok else 503
    )


@get("/metrics", tags=["ops"], summary="Prometheus metrics (text format)")
async def metrics(state: State) -> Response[bytes]:
    gauges: GatewayMetrics = state.metrics
    counts = collections.Counter(r.status for r in _bridge(state).registry.cached_all())
    for status in ("active", "deleting"):
        gauges.spaces.labels(status).set(counts.get(status, 0))
    return Response(
        content=generate_latest(gauges.registry), status_code=200, media_type=CONTENT_TYPE_LATEST
    )


# -- spaces ---------------------------------------------------------------


@post(
    "/api/v1/spaces",
    tags=["spaces"],
    summary="Create a space (or get the existing one)",
    description="Body: `CreateSpace` (`id`, optional `dim`, `metric`, `embedder`, `links`, "
    "`decay`, `consolidation`). 201 when created, 200 when it already existed with the "
    "same settings.",
)
async def create_space(request: Request[Any, Any, Any], state: State) -> Response[dict[str, Any]]:
    body = parse_body(CreateSpace, await request.body())
    space = checked_space(body.id)
    if body.embedder is not None:
        try:
            get_embedder(body.embedder, body.dim or _bridge(state).settings.default_dim)
        except ValueError as exc:
            raise field_problem("embedder", str(exc)) from None
    rec, created = await _bridge(state).create_or_get(
        space,
        dim=body.dim,
        metric=body.metric if "metric" in body.model_fields_set else None,
        embedder=body.embedder,
        links=body.links,
        decay=body.decay,
        consolidation=body.consolidation,
    )
    return Response(rec.model_dump(mode="json"), status_code=201 if created else 200)


@get("/api/v1/spaces", tags=["spaces"], summary="List spaces")
async def list_spaces(state: State) -> dict[str, Any]:
    recs = _bridge(state).registry.cached_all()
    return {"spaces": [r.model_dump(mode="json") for r in recs if r.status == "active"]}


@get(
    "/api/v1/spaces/{space:str}",
    tags=["spaces"],
    summary="A space's record with its memory count and applied sequence",
)
async def show_space(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> dict[str, Any]:
    bridge = _bridge(state)
    rec = await bridge.space_for_read(resolve_space(request, space))
    stats = json.loads(
        await bridge.query(space, "stats", StatsRequest(min_seq=bridge.acked.get(space)))
    )
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
)
async def delete_space(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[dict[str, Any]]:
    await _bridge(state).delete_space(resolve_space(request, space))
    return Response({"id": space, "status": "deleted"}, status_code=202)


# -- memories ---------------------------------------------------------------


def _commands(
    embedder: Embedder,
    space: str,
    rec: SpaceRecord,
    memories: list[MemoryIn],
    prefix: str,
    idem_key: str | None,
) -> list[RememberCommand]:
    """Embed what has text only, then the commands (a 400 naming a vector that
    does not fit the space)."""
    positions = to_embed(memories)
    embedded: dict[int, np.ndarray] = {}
    if positions:
        vectors = embedder.embed([memories[i].content for i in positions])
        embedded = dict(zip(positions, vectors, strict=True))
    try:
        return remember_commands(
            space, rec, memories, embedded, prefix=prefix, idempotency_key=idem_key
        )
    except FieldInvalid as exc:
        raise field_problem(exc.field, exc.message) from None


@post(
    "/api/v1/spaces/{space:str}/memories",
    tags=["memories"],
    status_code=202,
    summary="Remember one memory or a batch",
    description='Body: one `MemoryIn`, or `{"memories": [MemoryIn, …]}` (≤ 1000). '
    "Answers 202 `{ids, seq}` once JetStream has acknowledged every message. "
    "An `Idempotency-Key` header makes retries return the same ids and seq.",
)
async def remember(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[Any]:
    return await _remember(resolve_space(request, space), request, state)


async def _remember(space: str, request: Request[Any, Any, Any], state: State) -> Response[Any]:
    bridge = _bridge(state)
    raw = await request.body()
    # a batch body has one key, "memories"; validating straight from bytes is ~4x
    # faster than json.loads + validate for a batch of float lists
    if _BATCH.match(raw):
        memories, prefix = parse_body(MemoryBatch, raw).memories, "memories"
    else:
        memories, prefix = [parse_body(MemoryIn, raw)], ""
    idem_key = _idempotency_key(request)
    rec = await bridge.space_for_write(space)
    if len(memories) > 32:
        commands = await asyncio.to_thread(
            _commands, bridge.embedder_for(rec), space, rec, memories, prefix, idem_key
        )
    else:
        commands = _commands(bridge.embedder_for(rec), space, rec, memories, prefix, idem_key)
    seq = await bridge.publish(space, "remember", commands)
    ids = [c.memory.id for c in commands]
    return Response({"ids": ids, "seq": seq}, status_code=202)


def _idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 128:
        raise field_problem("Idempotency-Key", "must be 1-128 characters")
    return key


@delete(
    "/api/v1/spaces/{space:str}/memories/{memory_id:str}",
    tags=["memories"],
    status_code=202,
    summary="Forget a memory",
    description="Answers 202 `{seq}` once the forget command is in the WAL. The worker drops "
    "the memory from index and records and erases the stream message that stored it "
    "(JetStream overwrites the bytes). Forgetting an unknown id is a no-op.",
)
async def forget(
    space: FromPath[str], memory_id: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[dict[str, Any]]:
    return await _forget(resolve_space(request, space), memory_id, request, state)


async def _forget(
    space: str, memory_id: str, request: Request[Any, Any, Any], state: State
) -> Response[dict[str, Any]]:
    if not MEMORY_ID_RE.fullmatch(memory_id):
        raise field_problem("memory_id", f"{memory_id!r} is invalid: {MEMORY_ID_EXPECTED}")
    bridge = _bridge(state)
    await bridge.space_for_write(space)
    command_id = _idempotency_key(request) or new_id()
    seq = await bridge.publish(
        space, "forget", [ForgetCommand(command_id=command_id, memory_id=memory_id)]
    )
    return Response({"seq": seq}, status_code=202)


@post(
    "/api/v1/spaces/{space:str}/forget",
    tags=["memories"],
    status_code=202,
    summary="Forget many memories",
    description='Body: `{"ids": [memory id, …]}` (1-1000). One forget command per id, '
    "published pipelined; answers 202 `{seq, count}` (`seq`: the last) once all are in "
    "the WAL. Unknown ids are no-ops; an unknown space is a 404. With an "
    "`Idempotency-Key` header the command ids are `<key>:<index>`, so a retry is stored "
    "once and answers the same seq.",
)
async def forget_many(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[dict[str, Any]]:
    space = resolve_space(request, space)
    body = parse_body(ForgetBatch, await request.body())
    idem_key = _idempotency_key(request)
    bridge = _bridge(state)
    await bridge.space_for_write(space, create=False)
    commands = [
        ForgetCommand(
            command_id=new_id() if idem_key is None else f"{idem_key}:{i}", memory_id=memory_id
        )
        for i, memory_id in enumerate(body.ids)
    ]
    seq = await bridge.publish(space, "forget", commands)
    return Response({"seq": seq, "count": len(commands)}, status_code=202)


@get(
    "/api/v1/spaces/{space:str}/memories/{memory_id:str}",
    tags=["memories"],
    summary="Get one memory",
)
async def get_memory(
    space: FromPath[str],
    memory_id: FromPath[str],
    request: Request[Any, Any, Any],
    state: State,
    include_embedding: Annotated[bool, QueryParameter(description="Include the vector.")] = False,
) -> Response[bytes]:
    return await _get_memory(resolve_space(request, space), memory_id, state, include_embedding)


async def _get_memory(
    space: str, memory_id: str, state: State, include_embedding: bool
) -> Response[bytes]:
    bridge = _bridge(state)
    await bridge.space_for_read(space)
    raw = await bridge.query(
        space,
        "get",
        GetRequest(
            memory_id=memory_id,
            include_embedding=include_embedding,
            min_seq=bridge.acked.get(space),
        ),
    )
    return _raw(json.dumps(json.loads(raw)["memory"]).encode())


@get(
    "/api/v1/spaces/{space:str}/memories",
    tags=["memories"],
    summary="Page through a space's memories (stream order)",
)
async def list_memories(
    space: FromPath[str],
    request: Request[Any, Any, Any],
    state: State,
    limit: Limit = 100,
    cursor: Cursor = None,
    include_embedding: IncludeVectors = False,
) -> Response[bytes]:
    return await _list_memories(
        resolve_space(request, space), state, limit, cursor, include_embedding
    )


async def _list_memories(
    space: str, state: State, limit: int, cursor: str | None, include_embedding: bool
) -> Response[bytes]:
    bridge = _bridge(state)
    await bridge.space_for_read(space)
    return _raw(
        await bridge.query(
            space,
            "list",
            ListRequest(
                limit=limit,
                cursor=cursor,
                include_embedding=include_embedding,
                min_seq=bridge.acked.get(space),
            ),
        )
    )


@post(
    "/api/v1/spaces/{space:str}/recall",
    tags=["recall"],
    status_code=200,
    summary="Recall memories by text or vector cue",
    description="Body: `RecallRequest`. `mode`: `similarity` (the nearest memories), "
    "`spreading` (default: activation spreads from the `seed_k` nearest along the "
    "association graph, `max_hops`, `hop_decay`, `threshold`, `max_fanout`) or `hybrid` "
    "(`hybrid_weight` of spreading, the rest similarity). `tags`, `since`, `until` "
    "filter; `trace` adds each result's activation path. Scores use confidence decayed "
    "since the last recall; returned memories count one more recall (`reinforce`, "
    "written through the WAL shortly after). `consistency`: `read_your_writes` "
    "(default: waits for this gateway's writes), `strong` (waits for the stream's last "
    "sequence), `eventual` (no wait).",
)
async def recall(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[bytes]:
    return await _recall(resolve_space(request, space), request, state)


async def _recall(space: str, request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    bridge = _bridge(state)
    req = parse_body(RecallRequest, await request.body())
    rec = await bridge.space_for_read(space)
    if req.embedding is not None and len(req.embedding) != rec.dim:
        raise field_problem(
            "embedding",
            f"expected {rec.dim} values (space {space!r} has dim "
            f"{rec.dim}), got {len(req.embedding)}",
        )
    if req.consistency == "read_your_writes" and req.min_seq is None:
        req = req.model_copy(update={"min_seq": bridge.acked.get(space)})
    return _raw(await bridge.query(space, "recall", req))


# -- legacy routes (the space from X-Memory-Space or ?space=) ---------------

_LEGACY = (
    "Legacy route: the space comes from the `X-Memory-Space` header, then `?space=`; "
    "without either it is a 400, or — while `ENGRAM_REQUIRE_EXPLICIT_SPACE=false` — the "
    "default space, with `Deprecation` and `Warning` headers. "
)


@post(
    "/api/v1/memories",
    tags=["legacy"],
    status_code=202,
    summary="Remember one memory or a batch (space from X-Memory-Space or ?space=)",
    description=_LEGACY + "Otherwise as `POST /api/v1/spaces/{space}/memories`.",
)
async def legacy_remember(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    return await _remember(resolve_space(request, None), request, state)


@get(
    "/api/v1/memories",
    tags=["legacy"],
    summary="Page through memories (space from X-Memory-Space or ?space=)",
    description=_LEGACY + "Otherwise as `GET /api/v1/spaces/{space}/memories`.",
)
async def legacy_list_memories(
    request: Request[Any, Any, Any],
    state: State,
    limit: Limit = 100,
    cursor: Cursor = None,
    include_embedding: IncludeVectors = False,
) -> Response[bytes]:
    return await _list_memories(
        resolve_space(request, None), state, limit, cursor, include_embedding
    )


@get(
    "/api/v1/memories/{memory_id:str}",
    tags=["legacy"],
    summary="Get one memory (space from X-Memory-Space or ?space=)",
    description=_LEGACY + "Otherwise as `GET /api/v1/spaces/{space}/memories/{id}`.",
)
async def legacy_get_memory(
    memory_id: FromPath[str],
    request: Request[Any, Any, Any],
    state: State,
    include_embedding: Annotated[bool, QueryParameter(description="Include the vector.")] = False,
) -> Response[bytes]:
    return await _get_memory(resolve_space(request, None), memory_id, state, include_embedding)


@delete(
    "/api/v1/memories/{memory_id:str}",
    tags=["legacy"],
    status_code=202,
    summary="Forget a memory (space from X-Memory-Space or ?space=)",
    description=_LEGACY + "Otherwise as `DELETE /api/v1/spaces/{space}/memories/{id}`.",
)
async def legacy_forget(
    memory_id: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[dict[str, Any]]:
    return await _forget(resolve_space(request, None), memory_id, request, state)


@post(
    "/api/v1/recall",
    tags=["legacy"],
    status_code=200,
    summary="Recall memories (space from X-Memory-Space or ?space=)",
    description=_LEGACY + "Otherwise as `POST /api/v1/spaces/{space}/recall`.",
)
async def legacy_recall(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    return await _recall(resolve_space(request, None), request, state)


# -- links ----------------------------------------------------------------


async def _missing(bridge: NatsBridge, space: str, ids: dict[str, str]) -> None:
    """Raise a 404 naming each of ``ids`` (field → memory id) that the space lacks
    (asked of the worker, concurrently, after this gateway's writes)."""
    min_seq = bridge.acked.get(space)
    answers = await asyncio.gather(
        *(
            bridge.query(space, "get", GetRequest(memory_id=memory_id, min_seq=min_seq))
            for memory_id in ids.values()
        ),
        return_exceptions=True,
    )
    errors = []
    for (field, memory_id), answer in zip(ids.items(), answers, strict=True):
        # the worker's 404 for the memory; any other problem (the space gone, no
        # worker, a timeout) passes through as it is
        if isinstance(answer, Problem) and answer.title == "Memory not found":
            errors.append(
                {"field": field, "message": f"memory {memory_id!r} does not exist in {space!r}"}
            )
        elif isinstance(answer, BaseException):
            raise answer
    if errors:
        raise Problem(
            404,
            "Memory not found",
            "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            hint="Link memories that are stored in this space (see GET …/memories).",
            errors=errors,
        )


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
)
async def link(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[dict[str, Any]]:
    resolve_space(request, space)
    bridge = _bridge(state)
    body = parse_body(LinkIn, await request.body())
    command_id = _idempotency_key(request) or new_id()
    await bridge.space_for_write(space, create=False)
    await _missing(bridge, space, {"source": body.source, "target": body.target})
    # a memory forgotten between this check and the fold makes the worker reject the
    # command (spaces.<id>.evt.rejected): the WAL decides, not this check
    command = LinkCommand(
        command_id=command_id,
        source=body.source,
        target=body.target,
        weight=body.weight,
        kind=body.kind,
    )
    seq = await bridge.publish(space, "link", [command])
    return Response({"seq": seq}, status_code=202)


# -- consolidation --------------------------------------------------------


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
)
async def consolidate(
    space: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[bytes]:
    resolve_space(request, space)
    bridge = _bridge(state)
    raw = await request.body()
    req = parse_body(ConsolidateRequest, raw) if raw.strip() else ConsolidateRequest()
    await bridge.space_for_write(space, create=False)
    if req.min_seq is None:
        req = req.model_copy(update={"min_seq": bridge.acked.get(space)})
    data = await bridge.query(space, "consolidate", req)
    seq = ConsolidateResponse.model_validate_json(data).seq
    if seq is not None:
        bridge.note_acked(space, seq)
    return _raw(data)


@get(
    "/api/v1/status",
    tags=["ops"],
    summary="Every space's WAL position, hosting worker, lag, snapshot, or why it failed",
)
async def status(
    state: State,
    space: Annotated[str | None, QueryParameter(description="Only this space.")] = None,
) -> Response[bytes]:
    bridge = _bridge(state)
    report = await bridge.status(None if space is None else checked_space(space))
    return _raw(report.model_dump_json().encode())


@get(
    "/api/v1/spaces/{space:str}/events",
    tags=["events"],
    summary="The space's events as server-sent events",
    description="A `text/event-stream` of this space's events only: `id` is the event's "
    "sequence in the events stream, `event` its kind, `data` the event JSON. New events "
    "only, unless `Last-Event-ID` (header or `?last_event_id=`) asks to resume after that "
    "id. A `: keep-alive` comment is sent every 15 s while idle.",
)
async def space_events(
    space: FromPath[str],
    request: Request[Any, Any, Any],
    state: State,
    types: Annotated[
        str | None,
        QueryParameter(description=f"Comma-separated kinds: {', '.join(EVENT_KINDS)}."),
    ] = None,
    last_event_id: Annotated[
        str | None, QueryParameter(description="Resume after this event id.")
    ] = None,
) -> ServerSentEvent:
    bridge = _bridge(state)
    space = resolve_space(request, space)
    kinds = parse_types(types)
    after = parse_last_event_id(request.headers.get("last-event-id", last_event_id))
    await bridge.space_for_read(space)
    feed = EventFeed(bridge.js, space, kinds, after)
    await feed.open()  # before the headers go out: a client sees every later event
    return ServerSentEvent(
        feed.messages(),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # runs after the response, however it ended: the consumer never outlives it
        background=BackgroundTask(feed.close),
    )


ROUTES = [
    health,
    ready,
    metrics,
    status,
    create_space,
    list_spaces,
    show_space,
    delete_space,
    remember,
    forget,
    forget_many,
    get_memory,
    list_memories,
    recall,
    link,
    consolidate,
    space_events,
    *TRANSFER_ROUTES,
    legacy_remember,
    legacy_list_memories,
    legacy_get_memory,
    legacy_forget,
    legacy_recall,
]
