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

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import IO, Annotated, Any

import numpy as np
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from pydantic import ValidationError

from engram_contract.embedders import Embedder, get_embedder
from engram_contract.ids import new_id
from engram_contract.messages import (
    MAX_BATCH,
    MAX_TAG_CHARS,
    MAX_TAGS,
    ConsolidateCommand,
    ExportedMemory,
    ExportEnd,
    ExportHeader,
    ExportRequest,
    ImportResult,
    LinkCommand,
    Metric,
    RememberCommand,
    SpaceRecord,
    SpaceSettings,
    encode_embedding,
    vector_problem,
)
from engram_contract.subjects import CommandVerb
from engram_gateway.bridge import NatsBridge
from engram_gateway.problems import Problem, field_problem
from engram_gateway.spaces import resolve_space

NDJSON = "application/x-ndjson"
#: a longer line is refused (a memory is at most 100 KiB of text and 4096 floats)
MAX_LINE_BYTES = 4 * 1024 * 1024
#: lines validated per step (in a thread, so the event loop keeps serving)
VALIDATE_CHUNK = 256
#: the import's WAL messages stay in memory up to this size, then go to disk
SPOOL_BYTES = 16 * 1024 * 1024

Tags = Annotated[
    list[str] | None,
    QueryParameter(description="Only memories carrying this tag (repeat: all of them)."),
]


def _bridge(state: State) -> NatsBridge:
    bridge: NatsBridge = state.bridge
    return bridge


def _checked_tags(tags: list[str] | None) -> list[str]:
    tags = tags or []
    if len(tags) > MAX_TAGS:
        raise field_problem("tag", f"at most {MAX_TAGS} tags")
    for tag in tags:
        if not 1 <= len(tag) <= MAX_TAG_CHARS:
            raise field_problem("tag", f"a tag is 1-{MAX_TAG_CHARS} characters, got {tag!r}")
    return tags


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
)
async def export_space(
    space: FromPath[str], request: Request[Any, Any, Any], state: State, tag: Tags = None
) -> Stream:
    bridge = _bridge(state)
    space = resolve_space(request, space)
    tags = _checked_tags(tag)
    rec = await bridge.space_for_read(space)
    min_seq = bridge.acked.get(space)

    async def page(cursor: str | None) -> dict[str, Any]:
        req = ExportRequest(cursor=cursor, tags=tags, min_seq=min_seq)
        doc: dict[str, Any] = json.loads(await bridge.query(space, "export", req))
        return doc

    # the first page before the response starts: an unknown space, no worker or a
    # timeout is still a problem+json answer
    first = await page(None)
    header = ExportHeader(
        engram_export=1,
        space=space,
        exported_at=datetime.now(UTC),
        applied_seq=int(first["applied_seq"]),
        tags=tags,
        settings=SpaceSettings(
            dim=rec.dim,
            metric=rec.metric,
            embedder=rec.embedder,
            links=rec.links,
            decay=rec.decay,
            consolidation=rec.consolidation,
        ),
    )

    async def lines() -> AsyncIterator[bytes]:
        yield header.model_dump_json().encode() + b"\n"
        doc, memories, links = first, 0, 0
        while True:
            chunk = []
            for memory in doc["memories"]:
                memories += 1
                links += len(memory.get("links", ()))
                chunk.append(_line(memory))
            yield b"".join(chunk)
            cursor = doc["next_cursor"]
            if cursor is None:
                break
            try:
                doc = await page(cursor)
            except Problem as exc:
                # the status line is long gone: say it in the stream (an import of
                # this body is refused; the CLI reports it)
                yield _line(
                    {"error": {"status": exc.status, "title": exc.title, "detail": exc.detail}}
                )
                return
        yield _line({"end": ExportEnd(memories=memories, links=links).model_dump()})

    return Stream(
        lines(),
        media_type=NDJSON,
        headers={"Content-Disposition": f'attachment; filename="{space}.ndjson"'},
    )


# -- import -----------------------------------------------------------------


class _Importer:
    """Validates an import body line by line and spools the WAL messages it will
    write. Nothing is published until every line has passed."""

    def __init__(
        self,
        space: str,
        rec: SpaceRecord | None,
        idem_key: str | None,
        embedder: Embedder | None,
    ) -> None:
        self.space = space
        self.rec = rec  # None: the space does not exist (created from the header)
        self.idem_key = idem_key
        self._embedder = embedder  # the space's; None: made from the header when needed
        self.header: ExportHeader | None = None
        self.seen: set[str] = set()
        self.memories = 0
        self.links: list[tuple[int, LinkCommand]] = []
        self.end: tuple[int, ExportEnd] | None = None
        self.lines = 0  # lines read (blank ones too): the numbers errors name
        self.spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115

    # the target's settings: the space's, or (to be created) the header's
    @property
    def dim(self) -> int:
        if self.rec is not None:
            return self.rec.dim
        assert self.header is not None
        return self.header.settings.dim

    @property
    def metric(self) -> Metric:
        if self.rec is not None:
            return self.rec.metric
        assert self.header is not None
        return self.header.settings.metric

    def embedder(self) -> Embedder:
        """The target's embedder, for memory lines without a vector."""
        if self._embedder is None:
            assert self.header is not None
            settings = self.header.settings
            self._embedder = get_embedder(settings.embedder, settings.dim)
        return self._embedder

    def _problem(
        self, n: int, field: str | None, message: str, title: str = "Invalid input"
    ) -> Problem:
        where = f"line {n}" if field is None else f"line {n}: {field}"
        return Problem(
            400,
            title,
            f"{where}: {message}",
            hint="Nothing was imported. Fix the line (or export again) and retry.",
            errors=[
                {"field": f"line {n}" + ("" if field is None else f".{field}"), "message": message}
            ],
        )

    def command_id(self, n: int, part: str = "") -> str:
        if self.idem_key is None:
            return new_id()
        return f"{self.idem_key}:{n}{part}"

    def check(self, numbered: list[tuple[int, bytes]]) -> None:
        """Validate lines (in order); raises a 400 :class:`Problem` naming the first bad one."""
        for n, raw in numbered:
            self._check_line(n, raw)

    def _check_line(self, n: int, raw: bytes) -> None:
        if not raw.strip():
            return
        if self.end is not None:
            raise self._problem(n, None, 'nothing may follow the {"end": …} line')
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise self._problem(n, None, f"not valid JSON: {exc}", "Malformed JSON") from None
        if not isinstance(doc, dict):
            raise self._problem(n, None, "expected a JSON object")
        if "engram_export" in doc:
            if n != 1:
                raise self._problem(n, None, "the export header may only be the first line")
            self._check_header(n, doc)
            return
        if self.rec is None and self.header is None:
            raise self._problem(
                n,
                None,
                f"space {self.space!r} does not exist and the body has no export header "
                "(line 1) to create it from",
            )
        if "error" in doc and "id" not in doc:
            detail = doc["error"].get("detail") if isinstance(doc["error"], dict) else doc["error"]
            raise self._problem(
                n, None, f"the export failed part-way: {detail}", "Incomplete export"
            )
        if "end" in doc and "id" not in doc:
            try:
                self.end = (n, ExportEnd.model_validate(doc["end"]))
            except ValidationError as exc:
                raise self._invalid(n, exc, "end") from None
            return
        self._check_memory(n, doc)

    def _invalid(self, n: int, exc: ValidationError, prefix: str = "") -> Problem:
        errors = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
            errors.append({"field": f"line {n}" + (f".{loc}" if loc else ""), "message": e["msg"]})
        first = errors[0]
        return Problem(
            400,
            "Invalid input",
            f"{first['field'].replace('.', ': ', 1)}: {first['message']}",
            hint="Nothing was imported. Fix the line (or export again) and retry.",
            errors=errors,
        )

    def _check_header(self, n: int, doc: dict[str, Any]) -> None:
        try:
            header = ExportHeader.model_validate(doc)
        except ValidationError as exc:
            raise self._invalid(n, exc) from None
        dim = header.settings.dim
        if self.rec is not None and dim != self.rec.dim:
            raise self._problem(
                n,
                "settings.dim",
                f"the export has dim {dim}, space {self.space!r} has dim {self.rec.dim}",
            )
        if self.rec is None:
            try:
                get_embedder(header.settings.embedder, dim)
            except ValueError as exc:
                raise self._problem(n, "settings.embedder", str(exc)) from None
        self.header = header

    def _check_memory(self, n: int, doc: dict[str, Any]) -> None:
        try:
            memory = ExportedMemory.model_validate(doc)
            memory_in = memory.memory_in()
        except ValidationError as exc:
            raise self._invalid(n, exc) from None
        for link in memory.links:
            if link.target not in self.seen:
                raise self._problem(
                    n,
                    "links",
                    f"target {link.target!r} is not a memory on an earlier line",
                )
        if memory.kind == "semantic":
            members = list(dict.fromkeys(memory.members))
            missing = [m for m in members if m not in self.seen]
            if missing:
                raise self._problem(
                    n, "members", f"{missing[0]!r} is not a memory on an earlier line"
                )
            verb: CommandVerb = "consolidate"
            body: ConsolidateCommand | RememberCommand = ConsolidateCommand(
                command_id=self.command_id(n),
                memory_id=memory.id,
                members=members,
                history=memory.history(),
            )
        else:
            vec = memory_in.vector()
            if vec is None:
                vec = self.embedder().embed([memory.content])[0]
            else:
                problem = vector_problem(vec, self.dim, self.metric)
                if problem is not None:
                    field = "embedding_b64" if memory.embedding_b64 is not None else "embedding"
                    raise self._problem(n, field, f"{problem} (space {self.space!r})")
            verb = "remember"
            body = RememberCommand.model_construct(
                command_id=self.command_id(n),
                memory=memory_in.model_copy(
                    update={"embedding": None, "embedding_b64": encode_embedding(np.asarray(vec))}
                ),
                history=memory.history(),
            )
        data = body.model_dump_json(exclude_none=True).encode()
        self.spool.write(f"{verb}\t{body.command_id}\t".encode() + data + b"\n")
        self.seen.add(memory.id)
        self.memories += 1
        for j, link in enumerate(memory.links):
            command = LinkCommand(
                command_id=self.command_id(n, f":link:{j}"),
                source=memory.id,
                target=link.target,
                weight=link.weight,
                kind=link.kind,
            )
            self.links.append((n, command))

    def finish(self) -> None:
        """The whole body has been read: check what only the end can tell."""
        if self.header is None and self.rec is None:
            raise self._problem(1, None, "the body is empty: nothing to import")
        if self.end is not None:
            n, end = self.end
            if (end.memories, end.links) != (self.memories, len(self.links)):
                raise self._problem(
                    n,
                    "end",
                    f"the export says {end.memories} memories and {end.links} links, the body "
                    f"holds {self.memories} and {len(self.links)}: it is incomplete",
                    "Incomplete export",
                )

    def messages(self) -> Iterator[list[tuple[CommandVerb, str, bytes]]]:
        """The WAL messages in order, in batches: memories, then links."""
        self.spool.seek(0)
        batch: list[tuple[CommandVerb, str, bytes]] = []
        for row in self.spool:
            verb, command_id, data = row.rstrip(b"\n").split(b"\t", 2)
            batch.append((verb.decode(), command_id.decode(), data))  # type: ignore[arg-type]
            if len(batch) >= MAX_BATCH:
                yield batch
                batch = []
        for _, link in self.links:
            batch.append(
                ("link", link.command_id, link.model_dump_json(exclude_none=True).encode())
            )
            if len(batch) >= MAX_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


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
            raise field_problem(f"line {n + 1}", f"longer than {MAX_LINE_BYTES} bytes")
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
)
async def import_space(
    space: FromPath[str],
    request: Request[Any, Any, Any],
    state: State,
    create: Annotated[
        bool, QueryParameter(description="Create the space from the export's settings.")
    ] = False,
) -> Response[dict[str, Any]]:
    bridge = _bridge(state)
    space = resolve_space(request, space)
    rec = bridge.registry.cached(space) or await bridge.registry.get(space)
    if rec is None and not create:
        rec = await bridge.space_for_write(space, create=False)  # the 404
    if rec is not None and rec.status != "active":
        raise Problem(409, "Space not writable", f"memory space {space!r} is {rec.status}")
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 100:
        raise field_problem("Idempotency-Key", "must be 1-100 characters")
    importer = _Importer(space, rec, key, None if rec is None else bridge.embedder_for(rec))
    try:
        async for chunk in _numbered_lines(request):
            await asyncio.to_thread(importer.check, chunk)
        importer.finish()
        created = False
        if rec is None:
            assert importer.header is not None
            s = importer.header.settings
            rec, created = await bridge.create_or_get(
                space,
                dim=s.dim,
                metric=s.metric,
                embedder=s.embedder,
                links=s.links,
                decay=s.decay,
                consolidation=s.consolidation,
            )
        else:
            await bridge.space_for_write(space, create=False)
        seq: int | None = None
        for batch in importer.messages():
            seq = await bridge.publish_raw(space, batch)
    finally:
        importer.spool.close()
    result = ImportResult(
        space=space,
        created=created,
        memories=importer.memories,
        links=len(importer.links),
        seq=seq,
    )
    return Response(result.model_dump(mode="json"), status_code=200)


ROUTES = [export_space, import_space]
