"""The worker's answers to a space's queries (``spaces.<id>.q.<name>``): one
handler per :data:`~engram_contract.subjects.QueryName`, in :data:`QUERY_HANDLERS`.
A handler gets the raw request and answers with the reply's bytes; a failure is
an ``{"error": …}`` reply (:func:`answer`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final, Protocol, TypeVar

import msgspec
import numpy as np
from pydantic import BaseModel, ValidationError

from engram_contract.errors import validation_message
from engram_contract.messages import (
    ConsolidateRequest,
    ConsolidateResponse,
    ExportRequest,
    GetWire,
    ListWire,
    Memory,
    QueryStruct,
    RecallWire,
    StatsResponse,
    StatsWire,
    error_reply,
    parse_query,
    parse_recall,
)
from engram_contract.settings import WorkerSettings
from engram_contract.subjects import QueryName
from engram_worker.core.export import export_page, exported_json
from engram_worker.core.recall import RecallQuery
from engram_worker.core.records import StoredMemory
from engram_worker.core.state import SpaceState
from engram_worker.core.wal import wrong_space
from engram_worker.host import SpaceHost
from engram_worker.indexer import caught_up
from engram_worker.metrics import WorkerMetrics
from engram_worker.wal_consumer import NotCaughtUp

log = logging.getLogger(__name__)


class Answering(Protocol):
    """What a query handler needs of the worker."""

    @property
    def settings(self) -> WorkerSettings: ...

    @property
    def metrics(self) -> WorkerMetrics: ...

    @property
    def reply_budget(self) -> int:
        """The largest reply body that fits in one NATS message."""
        ...

    @property
    def queries_in_flight(self) -> int:
        """Queries being answered now, this one included."""
        ...


class QueryFailed(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _invalid(exc: ValidationError) -> QueryFailed:
    return QueryFailed(400, "Invalid query", validation_message(exc))


def _cursor(cursor: str | None) -> int:
    """The seq a page continues after (a cursor this API handed out), 0 for the first."""
    try:
        return int(cursor) if cursor else 0
    except ValueError:
        raise QueryFailed(
            400, "Invalid query", f"cursor: {cursor!r} is not a cursor from this API"
        ) from None


async def answer(w: Answering, host: SpaceHost, name: QueryName, data: bytes) -> bytes:
    """Answer one query of ``host``'s space; every failure becomes an
    ``{"error": …}`` reply."""
    try:
        return await QUERY_HANDLERS[name](w, host, data or b"{}")
    except Exception as exc:
        return failure_reply(host, name, exc)


def failure_reply(host: SpaceHost, name: str, exc: Exception) -> bytes:
    """The ``{"error": …}`` reply of a query that raised ``exc``."""
    if isinstance(exc, QueryFailed):
        return json.dumps(error_reply(exc.status, exc.title, exc.detail)).encode()
    if isinstance(exc, NotCaughtUp):
        return json.dumps(error_reply(504, "Not caught up", str(exc))).encode()
    log.error("space %s: query %s failed", host.space, name, exc_info=exc)
    return json.dumps(error_reply(500, "Query failed", repr(exc))).encode()


async def _wait(w: Answering, host: SpaceHost, min_seq: int | None) -> None:
    if min_seq:
        await host.wait_applied(min_seq, w.settings.apply_wait_timeout)


def _parse_recall(data: bytes, space: str) -> tuple[RecallWire, np.ndarray | None]:
    try:
        req, cue = parse_recall(data)
    except ValidationError as exc:
        raise _invalid(exc) from None
    _check_space(req, space)
    return req, cue


async def recall(w: Answering, host: SpaceHost, data: bytes) -> bytes:
    req, cue = _parse_recall(data, host.space)
    started = time.perf_counter()
    try:
        return await _recall_parsed(w, host, req, cue)
    finally:
        if not host.retired:  # a deleted space's series stay removed
            w.metrics.recall(host.space, req.mode, time.perf_counter() - started)


def recall_now(w: Answering, host: SpaceHost, data: bytes) -> bytes | None:
    """The reply to a recall answered here and now, without awaiting anything, when
    nothing stands in its way: no other reader or writer of the space holds or awaits
    its locks, every vector is indexed, and the request waits for nothing
    (``eventual``, or a ``min_seq`` already applied). ``None``: answer it the usual
    way (:func:`answer`). Nothing else runs on the event loop meanwhile, so the
    state is read as :meth:`SpaceHost.reading` would hand it out, without taking
    the locks, a task and a context manager per recall (~5 % of the worker's CPU
    per recall at 20k)."""
    if not (
        host.wal_caught_up
        and host.indexer.lock.idle
        and host.state_lock.idle
        and caught_up(host.state)
    ):
        return None
    host.last_used = time.monotonic()  # (idle unloading)
    try:
        req, cue = _parse_recall(data or b"{}", host.space)
        if req.consistency == "strong" or (req.min_seq or 0) > host.state.applied_seq:
            return None  # strong asks the stream its last seq; a later seq is waited for
        started = time.perf_counter()
        cue = _cue(host, req, cue)
        ids, body = _recall_answer(host, host.state, req, cue, RecallQuery.of(req), time.time())
    except Exception as exc:
        return failure_reply(host, "recall", exc)
    if req.reinforce:
        host.writeback.reinforce(ids)  # queued for a command written later (WriteBack)
    w.metrics.recall(host.space, req.mode, time.perf_counter() - started)
    return body


def _cue(host: SpaceHost, req: RecallWire, cue: np.ndarray | None) -> np.ndarray:
    """The recall's vector cue: the request's, checked against the space's dim, or
    its text embedded."""
    dim = host.state.dim
    if cue is None:
        assert req.query is not None
        return host.state.embed_query(req.query)
    if cue.shape != (dim,):
        field = "embedding" if req.embedding is not None else "embedding_b64"
        raise QueryFailed(
            400,
            "Invalid query",
            f"{field}: expected {dim} values (the space's dim), got {cue.shape[0]}",
        )
    return cue


def _recall_answer(
    host: SpaceHost,
    st: SpaceState,
    req: RecallWire,
    cue: np.ndarray,
    query: RecallQuery,
    now: float,
) -> tuple[list[str], bytes]:
    """The recall's results on ``st`` (read as a reader): their ids and the reply's bytes."""
    results = st.recall(cue, req.k, query, now)
    ids = [r.memory.id for r in results]
    body = _encode({"space": host.space, "applied_seq": st.applied_seq, "results": results})
    return ids, body


async def _recall_parsed(
    w: Answering, host: SpaceHost, req: RecallWire, cue: np.ndarray | None
) -> bytes:
    min_seq = req.min_seq
    if req.consistency == "strong":
        min_seq = max(min_seq or 0, await host.stream_last_seq())
    elif req.consistency == "eventual":
        min_seq = None
    await _wait(w, host, min_seq)
    vector, query, now = _cue(host, req, cue), RecallQuery.of(req), time.time()

    def answer(st: SpaceState) -> tuple[list[str], bytes]:
        # in a thread, sharing the space with other readers (see SpaceHost.reading):
        # the search, the results and their bytes, all off the event loop
        return _recall_answer(host, st, req, vector, query, now)

    # alone, a recall answers inline: a thread hop costs more than it gains with
    # nobody to overlap (measured: +0.2-0.5 ms p50 for one client); with others
    # in flight it goes to a thread, so they overlap while usearch searches
    ids, body = await host.with_index(answer, thread=w.queries_in_flight > 1)
    if req.reinforce:
        # queued for a command written later (WriteBack): never on the answer path
        host.writeback.reinforce(ids)
    return body


async def consolidate(w: Answering, host: SpaceHost, data: bytes) -> bytes:
    req = _parse(ConsolidateRequest, data, host.space)
    await _wait(w, host, req.min_seq)
    groups, seq = await host.writeback.consolidate(dry_run=req.dry_run)
    return _dump(
        ConsolidateResponse(
            space=host.space, applied_seq=host.state.applied_seq, groups=groups, seq=seq
        )
    )


async def get(w: Answering, host: SpaceHost, data: bytes) -> bytes:
    req = _parse_wire(GetWire, data, host.space)
    await _wait(w, host, req.min_seq)
    rec = host.state.get(req.memory_id)
    if rec is None:
        raise QueryFailed(
            404,
            "Memory not found",
            f"memory {req.memory_id!r} does not exist in space {host.space!r}",
        )
    memory = await host.with_index(lambda st: st.to_memory(rec, req.include_embedding))
    return _encode({"space": host.space, "applied_seq": host.state.applied_seq, "memory": memory})


async def list_(w: Answering, host: SpaceHost, data: bytes) -> bytes:
    req = _parse_wire(ListWire, data, host.space)
    await _wait(w, host, req.min_seq)
    after = _cursor(req.cursor)

    def page(st: SpaceState) -> tuple[list[StoredMemory], int | None, list[Memory], int]:
        recs, nxt = st.page(after, req.limit)
        memories = [st.to_memory(r, req.include_embedding) for r in recs]
        return recs, nxt, memories, st.applied_seq

    recs, nxt, memories, applied = await host.with_index(page)
    # a reply must fit in one NATS message: a page too big is cut short, and its
    # cursor continues right after the last memory it holds
    while True:
        body = _encode(
            {
                "space": host.space,
                "applied_seq": applied,
                "memories": memories,
                "next_cursor": None if nxt is None else str(nxt),
            }
        )
        if len(body) <= w.reply_budget or len(memories) <= 1:
            return body
        keep = max(1, min(len(memories) - 1, len(memories) * w.reply_budget // len(body)))
        memories, nxt = memories[:keep], recs[keep - 1].seq


async def export(w: Answering, host: SpaceHost, data: bytes) -> bytes:
    """A page of the space's memories as an export carries them (stream order),
    cut short to fit in one NATS message; ``next_cursor`` continues after it."""
    req = _parse(ExportRequest, data, host.space)
    await _wait(w, host, req.min_seq)
    after = _cursor(req.cursor)

    def page(st: SpaceState) -> tuple[list[tuple[int, bytes]], int | None, int]:
        items, nxt = export_page(st, after, req.limit, req.tags)
        return [(it.record.seq, exported_json(st, it)) for it in items], nxt, st.applied_seq

    lines, nxt, applied = await host.with_index(page)
    # the reply must fit in one NATS message: stop before the memory that would
    # not fit (always at least one), and continue right after the last one kept
    head = b'{"space":%s,"applied_seq":%d,"memories":[' % (
        json.dumps(host.space).encode(),
        applied,
    )
    size, kept = len(head) + 64, 0
    for _, line in lines:
        if kept and size + len(line) + 1 > w.reply_budget:
            nxt = lines[kept - 1][0]
            break
        size += len(line) + 1
        kept += 1
    cursor = b"null" if nxt is None else json.dumps(str(nxt)).encode()
    return head + b",".join(line for _, line in lines[:kept]) + b'],"next_cursor":' + cursor + b"}"


async def stats(w: Answering, host: SpaceHost, data: bytes) -> bytes:
    req = _parse_wire(StatsWire, data, host.space)
    await _wait(w, host, req.min_seq)
    state = host.state
    return _dump(
        StatsResponse(
            space=host.space,
            memories=len(state),
            applied_seq=state.applied_seq,
            rejected=state.rejected,
            snapshot_seq=host.snapshotter.snapshot_seq,
            snapshot_at=(
                None
                if host.snapshotter.snapshot_at is None
                else datetime.fromtimestamp(host.snapshotter.snapshot_at, UTC)
            ),
            recovery=host.snapshotter.recovery,
            worker=w.settings.worker_id,
        )
    )


M = TypeVar("M", bound=BaseModel)
W = TypeVar("W", bound=QueryStruct)


def _parse(model: type[M], data: bytes, space: str) -> M:
    """A query request for ``space`` (its subject's); a request whose
    ``memory_space_id`` names another space is refused."""
    try:
        req = model.model_validate_json(data)
    except ValidationError as exc:
        raise _invalid(exc) from None
    why = wrong_space(getattr(req, "memory_space_id", None), space)
    if why is not None:
        raise QueryFailed(400, "Wrong memory space", why)
    return req


def _parse_wire(struct: type[W], data: bytes, space: str) -> W:
    """A hot-path query request (msgspec; errors named as the model names them)."""
    try:
        req = parse_query(struct, data)
    except ValidationError as exc:
        raise _invalid(exc) from None
    _check_space(req, space)
    return req


def _check_space(req: QueryStruct, space: str) -> None:
    why = wrong_space(getattr(req, "memory_space_id", None), space)
    if why is not None:
        raise QueryFailed(400, "Wrong memory space", why)


def _fields(obj: object) -> dict[str, object]:
    """msgspec's hook for the answer models: a model is its fields (all of them, as
    ``model_dump_json`` writes them)."""
    if isinstance(obj, BaseModel):
        return obj.__dict__
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_ENCODER = msgspec.json.Encoder(enc_hook=_fields)


def _encode(reply: dict[str, object]) -> bytes:
    """A reply's bytes: the answer models encoded by msgspec (what ``model_dump_json``
    would write, in a fraction of the time)."""
    return _ENCODER.encode(reply)


def _dump(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


#: a query handler: (the worker, the space's host, the request bytes) → the reply bytes
QueryHandler = Callable[[Answering, SpaceHost, bytes], Awaitable[bytes]]

#: the worker's query dispatch: one handler per query name
#: (:data:`engram_contract.verbs.QUERIES`)
QUERY_HANDLERS: Final[dict[QueryName, QueryHandler]] = {
    "recall": recall,
    "get": get,
    "list": list_,
    "stats": stats,
    "consolidate": consolidate,
    "export": export,
}
