"""A space's state as snapshot columns, and back (the byte format around them is
:mod:`engram_worker.core.snapshot`).

Records are stored one column per field of :class:`StoredMemory` (the columns are
its fields, listed nowhere else), in stream order; the association graph as
``edge.*`` columns; the last memories stored as ``recent.*``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engram_worker.core.graph import AssociationGraph, GraphInvalid
from engram_worker.core.index import VectorIndex
from engram_worker.core.links import RECENT
from engram_worker.core.records import NO_METADATA, NO_TAGS, StoredMemory
from engram_worker.core.snapshot import SnapshotInvalid, columns

if TYPE_CHECKING:
    from engram_worker.core.state import SpaceState

#: the record columns of a snapshot, in :class:`StoredMemory`'s field order
COLUMNS: tuple[str, ...] = StoredMemory.__struct_fields__
_KINDS = frozenset({"episodic", "semantic"})


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _read_time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def _read_kind(value: Any) -> str:
    if value not in _KINDS:
        raise ValueError(f"memory kind {value!r}")
    return str(value)


#: how a field is written into (and read from) its column, where JSON needs help
_WRITE: dict[str, Callable[[Any], Any]] = {
    "occurred_at": _time,
    "created_at": _time,
    "last_recall": _time,
}
_READ: dict[str, Callable[[Any], Any]] = {
    "id": str,
    "key": int,
    "seq": int,
    "command_id": str,
    "content": str,
    "confidence": float,
    "tags": lambda v: list(v) if v else NO_TAGS,
    "metadata": lambda v: dict(v) if v else NO_METADATA,
    "occurred_at": _read_time,
    "created_at": _read_time,
    "kind": _read_kind,
    "recalls": int,
    "last_recall": lambda v: None if v is None else _read_time(v),
}
assert set(_READ) == set(COLUMNS), "every record field has a reader"


def capture(state: SpaceState) -> dict[str, list[Any]]:
    """The live records as columns, in stream order (call with nothing pending:
    the snapshot's index must hold exactly these keys)."""
    indexing = state.indexing
    assert not indexing.pending and not indexing.inflight and not indexing.stale, "flush first"
    recs = list(state.records.after(0))
    cols: dict[str, list[Any]] = {}
    for name in COLUMNS:
        write = _WRITE.get(name)
        values = [getattr(r, name) for r in recs]
        cols[name] = values if write is None else [write(v) for v in values]
    for name, col in state.graph.to_columns().items():
        cols[f"edge.{name}"] = col
    # the last memories stored (forgotten ones too): the next ones link to them
    recent = indexing.links.recent
    cols["recent.key"] = [k for k, _ in recent]
    cols["recent.at"] = [at for _, at in recent]
    return cols


def restore(
    state: SpaceState,
    records: dict[str, list[Any]],
    index: VectorIndex,
    *,
    applied_seq: int,
    next_key: int,
    rejected: int,
) -> None:
    """Take over a snapshot's records and index (the state must be empty); raises
    :class:`SnapshotInvalid` when they do not make a consistent state."""
    assert state.applied_seq == 0 and not len(state), "restore into a fresh state"
    cols = columns(records, COLUMNS)
    readers = [_READ[name] for name in COLUMNS]
    by_id: dict[str, StoredMemory] = {}
    try:
        for row in zip(*cols, strict=True):
            rec = StoredMemory(*(read(v) for read, v in zip(readers, row, strict=True)))
            by_id[rec.id] = rec
    except (TypeError, ValueError) as exc:
        raise SnapshotInvalid(f"unreadable record: {exc}") from None
    if len(by_id) != len(cols[0]) or len(index) != len(by_id):
        raise SnapshotInvalid(
            f"{len(cols[0])} records ({len(by_id)} distinct) but {len(index)} vectors"
        )
    seqs = [r.seq for r in by_id.values()]
    if any(a >= b for a, b in itertools.pairwise(seqs)) or (
        seqs and (seqs[-1] > applied_seq or max(r.key for r in by_id.values()) >= next_key)
    ):
        raise SnapshotInvalid("records are out of order or beyond the snapshot's position")
    keys = {r.key for r in by_id.values()}
    if len(keys) != len(by_id):
        raise SnapshotInvalid("two records share an index key")
    if not index.contains_all(list(keys)):
        raise SnapshotInvalid("a record's vector is missing from the index")
    edge_cols = {name[5:]: col for name, col in records.items() if name.startswith("edge.")}
    try:
        graph = AssociationGraph.from_columns(edge_cols, keys)
    except GraphInvalid as exc:
        raise SnapshotInvalid(f"association graph: {exc}") from None
    try:
        recent = [
            (int(k), float(at))
            for k, at in zip(records["recent.key"], records["recent.at"], strict=True)
        ]
    except (KeyError, TypeError, ValueError):
        raise SnapshotInvalid("unreadable recent memories") from None
    if len(recent) > RECENT or any(k >= next_key for k, _ in recent):
        raise SnapshotInvalid("recent memories beyond the snapshot's position")
    state.load(
        graph=graph,
        recent=recent,
        by_id=by_id,
        index=index,
        applied_seq=applied_seq,
        next_key=next_key,
        rejected=rejected,
    )
