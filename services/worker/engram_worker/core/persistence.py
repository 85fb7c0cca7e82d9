"""A space's state as snapshot columns, and back (the byte format around them is
:mod:`engram_worker.core.snapshot`, the typed columns :mod:`.columns`).

Records are written one column per field of :class:`StoredMemory` (its fields are
the columns, listed nowhere else), in stream order: numbers as arrays, times as
int64 microseconds since the epoch (a time with another UTC offset, or none, is
noted in ``zone``), ``kind`` as codes into ``kind.table``, ``tags`` and
``metadata`` sparse (``tags.row`` / ``tags.value``: only the rows that have
some). The association graph is ``edge.*`` arrays (:class:`GraphArrays`), the
last memories stored ``recent.*``.

:func:`restore` checks everything with array operations (order, keys, the index
holding every key, edges joining live keys) before the state takes any of it. A
format 3 snapshot's JSON records are converted to the same columns first
(:func:`from_v3`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from itertools import starmap
from typing import TYPE_CHECKING, Any

import numpy as np

from engram_worker.core import columns as C
from engram_worker.core.graph import AssociationGraph, GraphInvalid
from engram_worker.core.graph_arrays import GraphArrays
from engram_worker.core.index import VectorIndex
from engram_worker.core.links import RECENT
from engram_worker.core.records import NO_METADATA, NO_TAGS, Indexes, StoredMemory, make_indexes
from engram_worker.core.snapshot import FORMAT, Column, SnapshotInvalid

if TYPE_CHECKING:
    from engram_worker.core.state import SpaceState

#: the record fields a snapshot holds, in :class:`StoredMemory`'s field order
COLUMNS: tuple[str, ...] = StoredMemory.__struct_fields__
TIMES = ("occurred_at", "created_at", "last_recall")
_KINDS = frozenset({"episodic", "semantic"})
#: the columns every record has a value in (``tags``/``metadata`` are sparse)
DENSE = tuple(c for c in COLUMNS if c not in ("tags", "metadata"))


def capture(state: SpaceState) -> dict[str, Column]:
    """The live records, graph and recent links as columns, in stream order (call
    with nothing pending: the snapshot's index must hold exactly these keys)."""
    indexing = state.indexing
    assert not indexing.pending and not indexing.inflight and not indexing.stale, "flush first"
    recs = list(state.records.after(0))
    cols: dict[str, Column] = {
        "id": [r.id for r in recs],
        "key": np.fromiter((r.key for r in recs), np.int64, len(recs)),
        "seq": np.fromiter((r.seq for r in recs), np.int64, len(recs)),
        "command_id": [r.command_id for r in recs],
        "content": [r.content for r in recs],
        "confidence": np.fromiter((r.confidence for r in recs), np.float64, len(recs)),
        "recalls": np.fromiter((r.recalls for r in recs), np.int64, len(recs)),
    }
    kind, table = C.codes([r.kind for r in recs])
    cols["kind"], cols["kind.table"] = kind, table
    zones: list[C.Zone] = []
    for name in TIMES:
        cols[name] = C.micros(name, [getattr(r, name) for r in recs], zones)
    cols["zone"] = zones
    for name in ("tags", "metadata"):
        rows = [i for i, r in enumerate(recs) if getattr(r, name)]
        cols[f"{name}.row"] = np.asarray(rows, dtype=np.int64)
        cols[f"{name}.value"] = [getattr(recs[i], name) for i in rows]
    edges = state.graph.to_arrays()
    cols["edge.a"], cols["edge.b"], cols["edge.weight"] = edges.a, edges.b, edges.weight
    cols["edge.kind"], cols["edge.kind.table"] = edges.kind, list(edges.kinds)
    cols["edge.explicit"] = edges.explicit
    # the last memories stored (forgotten ones too): the next ones link to them
    recent = indexing.links.recent
    cols["recent.key"] = np.asarray([k for k, _ in recent], dtype=np.int64)
    cols["recent.at"] = np.asarray([at for _, at in recent], dtype=np.float64)
    return cols


@dataclass(slots=True)
class Restored:
    """A snapshot's records, graph and recent links, checked and built: all a
    state takes from it but the index (:func:`prepare`, then :func:`finish`)."""

    rows: int
    distinct: int  # distinct ids among the rows
    applied_seq: int
    next_key: int
    rejected: int
    by_id: dict[str, StoredMemory] = field(default_factory=dict)
    indexes: Indexes | None = None  # the records' (made beside them)
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # in stream order
    graph: AssociationGraph = field(default_factory=AssociationGraph)
    recent: list[tuple[int, float]] = field(default_factory=list)
    #: what is wrong with the records, raised by :func:`finish` in the order a
    #: snapshot's checks go: the count of vectors, the ids and keys, every key
    #: in the index, then the rest
    keys_problem: SnapshotInvalid | None = None
    problem: SnapshotInvalid | None = None


def restore(
    state: SpaceState,
    records: dict[str, Column],
    index: VectorIndex,
    *,
    applied_seq: int,
    next_key: int,
    rejected: int,
    format: int = FORMAT,
) -> None:
    """Take over a snapshot's columns and index (the state must be empty); raises
    :class:`SnapshotInvalid` when they do not make a consistent state. ``format``:
    the snapshot's (3: JSON records, converted first)."""
    assert state.applied_seq == 0 and not len(state), "restore into a fresh state"
    done = prepare(
        records, applied_seq=applied_seq, next_key=next_key, rejected=rejected, format=format
    )
    finish(state, done, index)


def prepare(
    records: dict[str, Column],
    *,
    applied_seq: int,
    next_key: int,
    rejected: int,
    format: int = FORMAT,
) -> Restored:
    """The records, graph and recent links of a snapshot's columns, every check
    that needs no index passed (the index may still be on its way); raises
    :class:`SnapshotInvalid` when not even the ids can be read, and keeps any
    other problem for :func:`finish`."""
    cols = from_v3(records) if format == 3 else records
    ids = C.strings(cols, "id")
    dense: dict[str, Any] = {
        "id": ids,
        "key": C.array(cols, "key", "iu", np.int64),
        "seq": C.array(cols, "seq", "iu", np.int64),
        "command_id": C.strings(cols, "command_id"),
        "content": C.strings(cols, "content"),
        "confidence": C.array(cols, "confidence", "iuf", np.float64),
        "recalls": C.array(cols, "recalls", "iu", np.int64),
        "kind": C.decoded(cols, "kind", _KINDS.__contains__),
    }
    for name in TIMES:
        dense[name] = C.array(cols, name, "iu", np.int64)
    if len({len(dense[name]) for name in DENSE}) > 1:
        raise SnapshotInvalid("record columns differ in length")
    distinct = len(set(ids))
    refused = functools.partial(
        Restored,
        rows=len(ids),
        distinct=distinct,
        applied_seq=applied_seq,
        next_key=next_key,
        rejected=rejected,
        keys=dense["key"],
    )
    try:
        _check_keys(dense, distinct, applied_seq, next_key)
    except SnapshotInvalid as exc:
        return refused(keys_problem=exc)
    try:
        return _build(
            cols, dense, distinct, applied_seq=applied_seq, next_key=next_key, rejected=rejected
        )
    except SnapshotInvalid as exc:
        return refused(problem=exc)


def _check_keys(dense: dict[str, Any], distinct: int, applied_seq: int, next_key: int) -> None:
    ids, key, seq = dense["id"], dense["key"], dense["seq"]
    n = len(ids)
    if distinct != n:
        raise SnapshotInvalid(f"{n} records ({distinct} distinct)")
    if n and (
        bool(np.any(np.diff(seq) <= 0))
        or int(seq[-1]) > applied_seq
        or int(key.max()) >= next_key
        or int(key.min()) < 1
    ):
        raise SnapshotInvalid("records are out of order or beyond the snapshot's position")
    # keys are handed out in stream order, so they normally rise: no sort needed
    if not bool(np.all(np.diff(key) > 0)) and len(np.unique(key)) != n:
        raise SnapshotInvalid("two records share an index key")


def _build(
    cols: dict[str, Column],
    dense: dict[str, Any],
    distinct: int,
    *,
    applied_seq: int,
    next_key: int,
    rejected: int,
) -> Restored:
    ids, key, seq = dense["id"], dense["key"], dense["seq"]
    n = len(ids)
    tags = C.sparse(cols, "tags", n, C.tag_list)
    metadata = C.sparse(cols, "metadata", n, C.metadata_dict)
    zones = C.read_zones(cols.get("zone", []), n, TIMES)
    graph = _graph(cols, key)
    recent = _recent(cols, next_key)
    # every check passed: build the records
    created = C.datetimes("created_at", dense["created_at"], zones)
    times = {
        "created_at": created,
        "occurred_at": C.datetimes(
            "occurred_at", dense["occurred_at"], zones, (dense["created_at"], created)
        ),
        "last_recall": C.datetimes("last_recall", dense["last_recall"], zones),
    }
    if None in times["occurred_at"] or None in times["created_at"]:
        raise SnapshotInvalid("unreadable record: a memory without a time")
    tag_col = [NO_TAGS] * n
    for row, value in tags.items():
        tag_col[row] = list(value)
    meta_col = [NO_METADATA] * n
    for row, value in metadata.items():
        meta_col[row] = dict(value)
    fields: dict[str, Any] = {
        **dense,
        **times,
        "tags": tag_col,
        "metadata": meta_col,
        "key": key.tolist(),
        "seq": seq.tolist(),
        "confidence": dense["confidence"].tolist(),
        "recalls": dense["recalls"].tolist(),
    }
    values = [fields[c] for c in COLUMNS]
    recs: list[StoredMemory] = []
    for lo in range(0, n, C.SLICE):  # see C.SLICE
        recs += starmap(StoredMemory, zip(*(v[lo : lo + C.SLICE] for v in values), strict=True))
    return Restored(
        rows=n,
        distinct=distinct,
        applied_seq=applied_seq,
        next_key=next_key,
        rejected=rejected,
        by_id=dict(zip(ids, recs, strict=True)),
        indexes=make_indexes(recs, fields["key"], fields["seq"], ids),
        keys=key,
        graph=graph,
        recent=recent,
    )


def finish(state: SpaceState, done: Restored, index: VectorIndex) -> None:
    """Check :func:`prepare`'s records against the snapshot's index, then give
    both to ``state`` (which must be fresh); raises :class:`SnapshotInvalid`."""
    assert state.applied_seq == 0 and not len(state), "restore into a fresh state"
    if len(index) != done.rows:
        raise SnapshotInvalid(
            f"{done.rows} records ({done.distinct} distinct) but {len(index)} vectors"
        )
    if done.keys_problem is not None:
        raise done.keys_problem
    if not index.contains_all(done.keys):
        raise SnapshotInvalid("a record's vector is missing from the index")
    if done.problem is not None:
        raise done.problem
    state.load(
        graph=done.graph,
        recent=done.recent,
        by_id=done.by_id,
        index=index,
        applied_seq=done.applied_seq,
        next_key=done.next_key,
        rejected=done.rejected,
        indexes=done.indexes,
    )


def _graph(cols: dict[str, Any], keys: np.ndarray) -> AssociationGraph:
    try:
        arrays = GraphArrays(
            a=C.array(cols, "edge.a", "iu", np.int64),
            b=C.array(cols, "edge.b", "iu", np.int64),
            weight=C.array(cols, "edge.weight", "iuf", np.float64),
            kind=C.array(cols, "edge.kind", "iu", np.int64).astype(np.uint8),
            kinds=tuple(_edge_kinds(cols.get("edge.kind.table"))),
            explicit=C.array(cols, "edge.explicit", "b", np.bool_),
        )
        if len(arrays.kind) and int(C.array(cols, "edge.kind", "iu", np.int64).max()) > 255:
            raise GraphInvalid("an edge kind is beyond the kind table")
        return AssociationGraph.from_arrays(arrays, keys)
    except (GraphInvalid, SnapshotInvalid) as exc:
        raise SnapshotInvalid(f"association graph: {exc}") from None


def _edge_kinds(table: Any) -> list[str]:
    if not isinstance(table, list) or not all(isinstance(k, str) and k for k in table):
        raise GraphInvalid(f"edge kinds {table!r}")
    return table


def _recent(cols: dict[str, Any], next_key: int) -> list[tuple[int, float]]:
    try:
        keys = C.array(cols, "recent.key", "iu", np.int64)
        ats = C.array(cols, "recent.at", "iuf", np.float64)
    except SnapshotInvalid:
        raise SnapshotInvalid("unreadable recent memories") from None
    if len(keys) != len(ats):
        raise SnapshotInvalid("unreadable recent memories")
    if len(keys) > RECENT or (len(keys) and int(keys.max()) >= next_key):
        raise SnapshotInvalid("recent memories beyond the snapshot's position")
    return list(zip(keys.tolist(), ats.tolist(), strict=True))


def from_v3(records: dict[str, Any]) -> dict[str, Column]:
    """A format 3 snapshot's records (JSON columns, one value per record and field;
    times as ISO strings) as format 4 columns."""
    try:
        old = [records[name] for name in COLUMNS]
    except KeyError as exc:
        raise SnapshotInvalid(f"records lack the column {exc.args[0]!r}") from None
    if len({len(c) if isinstance(c, list) else -1 for c in old}) > 1:
        raise SnapshotInvalid("record columns differ in length")
    v3 = dict(zip(COLUMNS, old, strict=True))
    cols: dict[str, Column] = {
        name: v3[name] for name in ("id", "key", "seq", "command_id", "content", "recalls")
    }
    cols["confidence"] = v3["confidence"]
    try:
        if not all(isinstance(k, str) for k in v3["kind"]):
            raise ValueError(f"memory kind in {sorted(set(map(str, v3['kind'])))}")
        cols["kind"], cols["kind.table"] = C.codes(v3["kind"])
        zones: list[C.Zone] = []
        for name in TIMES:
            whens = [None if v is None else _iso(v) for v in v3[name]]
            if name != "last_recall" and None in whens:
                raise ValueError(f"{name} missing")
            cols[name] = C.micros(name, whens, zones)
        cols["zone"] = zones
        for name in ("tags", "metadata"):
            rows = [i for i, v in enumerate(v3[name]) if v]
            cols[f"{name}.row"] = np.asarray(rows, dtype=np.int64)
            cols[f"{name}.value"] = [v3[name][i] for i in rows]
        for name in ("a", "b", "weight", "explicit"):
            cols[f"edge.{name}"] = records.get(f"edge.{name}")
        kinds = records.get("edge.kind")
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise SnapshotInvalid("association graph: unreadable edge kinds")
        cols["edge.kind"], cols["edge.kind.table"] = C.codes(kinds)
        if cols["edge.explicit"] is not None and not all(
            isinstance(e, bool) for e in cols["edge.explicit"]
        ):
            raise SnapshotInvalid("association graph: an edge's explicit flag is not a bool")
    except (TypeError, ValueError) as exc:
        raise SnapshotInvalid(f"unreadable record: {exc}") from None
    for name in ("key", "at"):
        cols[f"recent.{name}"] = records.get(f"recent.{name}")
    return {k: v for k, v in cols.items() if v is not None}


def _iso(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))
