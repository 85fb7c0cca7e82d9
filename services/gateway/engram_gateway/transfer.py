"""Export and import, for every surface: ``GET/POST …/export|import`` (NDJSON,
routes/transfer.py) and the gRPC ``Export``/``Import`` streams.

:func:`open_export` asks for the first page before anything is sent (an unknown
space, no worker or a timeout is still a plain error), then :meth:`Export.pages`
pages through the worker's ``export`` query one page at a time.
:func:`run_import` validates every line of an import (the export's items as JSON
lines) before it writes anything, as :class:`~engram_gateway.importer.Importer`
does, then publishes memories first and links last.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engram_contract.errors import error_for, field_error
from engram_contract.messages import (
    MAX_TAG_CHARS,
    MAX_TAGS,
    ExportEnd,
    ExportHeader,
    ExportRequest,
    ImportResult,
    SpaceSettings,
)
from engram_gateway.bridge import NatsBridge
from engram_gateway.importer import Importer


def checked_tags(tags: list[str] | None, field: str = "tag") -> list[str]:
    tags = tags or []
    if len(tags) > MAX_TAGS:
        raise field_error(field, f"at most {MAX_TAGS} tags")
    for tag in tags:
        if not 1 <= len(tag) <= MAX_TAG_CHARS:
            raise field_error(field, f"a tag is 1-{MAX_TAG_CHARS} characters, got {tag!r}")
    return tags


@dataclass
class Export:
    """An export under way: its header, then :meth:`pages` of memory documents
    (``ExportedMemory`` as JSON objects), then :meth:`end`."""

    bridge: NatsBridge
    space: str
    tags: list[str]
    min_seq: int | None
    header: ExportHeader
    first: dict[str, Any]
    memories: int = 0
    links: int = 0

    async def _page(self, cursor: str | None) -> dict[str, Any]:
        req = ExportRequest(cursor=cursor, tags=self.tags, min_seq=self.min_seq)
        doc: dict[str, Any] = json.loads(await self.bridge.query(self.space, "export", req))
        return doc

    async def pages(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Each page's memories, counted; an error part-way is raised (an
        :class:`EngramError`) after the pages before it."""
        doc = self.first
        while True:
            page: list[dict[str, Any]] = doc["memories"]
            self.memories += len(page)
            self.links += sum(len(m.get("links", ())) for m in page)
            yield page
            cursor = doc["next_cursor"]
            if cursor is None:
                return
            doc = await self._page(cursor)

    def end(self) -> ExportEnd:
        return ExportEnd(memories=self.memories, links=self.links)


async def open_export(bridge: NatsBridge, space: str, tags: list[str]) -> Export:
    """The export of ``space``'s memories carrying all ``tags``, first page asked."""
    rec = await bridge.spaces.for_read(space)
    min_seq = bridge.acked.get(space)
    first = json.loads(
        await bridge.query(space, "export", ExportRequest(tags=tags, min_seq=min_seq))
    )
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
    return Export(bridge, space, tags, min_seq, header, first)


def checked_import_key(key: str | None, field: str = "Idempotency-Key") -> str | None:
    if key is not None and not 1 <= len(key) <= 100:
        raise field_error(field, "must be 1-100 characters")
    return key


async def run_import(
    bridge: NatsBridge,
    space: str,
    create: bool,
    key: str | None,
    chunks: AsyncIterator[list[tuple[int, bytes]]],
) -> ImportResult:
    """Import numbered JSON lines (an export) into ``space``: 404 when it does not
    exist and ``create`` is false; every line validated before anything is written."""
    rec = await bridge.spaces.record(space)
    if rec is None and not create:
        rec = await bridge.spaces.for_write(space, create=False)  # the 404
    if rec is not None and rec.status != "active":
        raise error_for(409, "Space not writable", f"memory space {space!r} is {rec.status}")
    importer = Importer(space, rec, key, None if rec is None else bridge.spaces.embedder(rec))
    try:
        async for chunk in chunks:
            await asyncio.to_thread(importer.check, chunk)
        importer.finish()
        created = False
        if rec is None:
            assert importer.header is not None
            s = importer.header.settings
            rec, created = await bridge.spaces.create_or_get(
                space,
                dim=s.dim,
                metric=s.metric,
                embedder=s.embedder,
                links=s.links,
                decay=s.decay,
                consolidation=s.consolidation,
            )
        else:
            await bridge.spaces.for_write(space, create=False)
        seq: int | None = None
        for batch in importer.messages():
            seq = await bridge.publish_raw(space, batch)
    finally:
        importer.spool.close()
    return ImportResult(
        space=space,
        created=created,
        memories=importer.memories,
        links=len(importer.links),
        seq=seq,
    )
