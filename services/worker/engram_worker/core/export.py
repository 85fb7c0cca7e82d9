"""A space's memories as the API returns them, and as an export carries them
(each with its vector and the explicit links an import needs to rebuild it).

The wire models' fields are taken from the stored record by name: a field both
have is listed once, in :class:`StoredMemory`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engram_contract.messages import ExportedMemory, ExportLink, Memory, encode_embedding
from engram_worker.core.graph import CONSOLIDATED
from engram_worker.core.records import StoredMemory

if TYPE_CHECKING:
    from engram_worker.core.state import SpaceState

#: what a :class:`Memory` / :class:`ExportedMemory` takes from the record as it is
_MEMORY_FIELDS = tuple(f for f in Memory.model_fields if f in StoredMemory.__struct_fields__)
_EXPORT_FIELDS = tuple(
    f for f in ExportedMemory.model_fields if f in StoredMemory.__struct_fields__
)


@dataclass(frozen=True, slots=True)
class ExportItem:
    """A memory as an export carries it: the record, its explicit links to memories
    exported before it ``(other id, weight, kind)`` and, semantic, its members."""

    record: StoredMemory
    links: list[tuple[str, float, str]]
    members: list[str]


def _fields(rec: StoredMemory, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in names}


def to_memory(state: SpaceState, rec: StoredMemory, include_embedding: bool = False) -> Memory:
    """The stored memory as the API returns it (with its vector, if asked)."""
    embedding = None
    if include_embedding:
        vec = state.indexing.vector(rec.key)
        embedding = None if vec is None else [float(x) for x in vec]
    return Memory(**_fields(rec, _MEMORY_FIELDS), embedding=embedding)


def exported_json(state: SpaceState, item: ExportItem) -> bytes:
    """One memory of an export as JSON (the vector as base64 of float32)."""
    rec = item.record
    vec = state.indexing.vector(rec.key)
    memory = ExportedMemory.model_construct(
        **_fields(rec, _EXPORT_FIELDS),
        embedding_b64=None if vec is None else encode_embedding(vec),
        members=item.members,
        links=[ExportLink(target=t, weight=w, kind=k) for t, w, k in item.links],
    )
    return memory.model_dump_json(exclude_none=True, exclude_defaults=False).encode()


def export_page(
    state: SpaceState, after_seq: int, limit: int, tags: tuple[str, ...] | list[str] = ()
) -> tuple[list[ExportItem], int | None]:
    """Live memories after ``after_seq`` in stream order (only those carrying
    every tag in ``tags``), each with what an import needs to rebuild it: its
    explicit links to memories exported before it (each link once, on the later
    memory of the pair) and, for a semantic memory, its exported members. A
    semantic memory with fewer than two members in the export is left out (it
    could not be consolidated again). Returns the page and the next cursor
    (``None``: no more). Reads the graph: in a host, call it under the index lock."""
    wanted = set(tags)
    graph = state.graph
    records = state.records

    def exported(rec: StoredMemory) -> bool:
        return not wanted or wanted.issubset(rec.tags)

    items: list[ExportItem] = []
    more = False
    for rec in records.after(after_seq):
        if len(items) >= limit:
            more = True
            break
        if not exported(rec):
            continue
        links: list[tuple[str, float, str]] = []
        members: list[str] = []
        for other_key, weight, kind in graph.neighbours(rec.key):
            other = records.by_key.get(other_key)
            if other is None or other.seq >= rec.seq or not exported(other):
                continue
            edge = graph.edge(rec.key, other_key)
            if edge is not None and edge[2]:
                links.append((other.id, weight, kind))
            elif kind == CONSOLIDATED and rec.kind == "semantic":
                members.append(other.id)
        if rec.kind == "semantic" and len(members) < 2:
            continue
        links.sort(key=lambda t: records.by_id[t[0]].seq)
        items.append(ExportItem(rec, links, sorted(members)))
    return items, (items[-1].record.seq if items and more else None)
