"""Format 3 snapshots (records as one JSON object of columns) written by earlier
workers are still read: restored into the same state a format 4 snapshot of the
same space gives, and refused on the same kinds of damage.

The v3 writer here is the one those workers ran (``capture`` + ``encode`` of
format 3), kept as a fixture.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import pytest

from engram_worker.core.index import VectorIndex
from engram_worker.core.persistence import COLUMNS, restore
from engram_worker.core.records import StoredMemory
from engram_worker.core.snapshot import MAGIC, Section, SnapshotInvalid, decode
from engram_worker.core.state import SpaceState
from tests.helpers import empty_state, live_records
from tests.unit.test_snapshot import DIM, assert_same, busy_wal, header_of, load, replay, write


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def capture_v3(state: SpaceState) -> dict[str, list[Any]]:
    """The records, graph and recent links as format 3 wrote them."""
    state.flush()
    recs: list[StoredMemory] = list(state.records.after(0))
    cols: dict[str, list[Any]] = {}
    for name in COLUMNS:
        values = [getattr(r, name) for r in recs]
        if name in ("occurred_at", "created_at", "last_recall"):
            values = [_time(v) for v in values]
        cols[name] = values
    for name, col in state.graph.to_columns().items():
        cols[f"edge.{name}"] = col
    recent = state.indexing.links.recent
    cols["recent.key"] = [k for k, _ in recent]
    cols["recent.at"] = [at for _, at in recent]
    return cols


def encode_v3(state: SpaceState, records: dict[str, list[Any]] | None = None) -> bytes:
    """A format 3 snapshot of ``state`` (this scrubs its index)."""
    records = capture_v3(state) if records is None else records
    state.index.scrub()
    index = bytes(state.index.to_bytes())
    body = json.dumps(records, separators=(",", ":"), ensure_ascii=False).encode()
    header = header_of(state, format=3)
    header.sections = [
        Section(name="records", length=len(body), sha256=hashlib.sha256(body).hexdigest()),
        Section(name="index", length=len(index), sha256=hashlib.sha256(index).hexdigest()),
    ]
    head = header.model_dump_json(exclude={"sections": {"__all__": {"dtype"}}}).encode()
    return b"".join(
        [MAGIC, len(head).to_bytes(8, "little"), hashlib.sha256(head).digest(), head, body, index]
    )


def test_a_v3_snapshot_restores_the_same_state_as_a_v4_one() -> None:
    original = replay(busy_wal())
    original.flush()
    v3 = encode_v3(original)
    assert decode(v3).header.format == 3
    from_v3 = load(v3)
    assert_same(original, from_v3)
    assert_same(load(write(replay(busy_wal()))), from_v3)
    # and the next snapshot it writes is format 4, and holds the same
    again = load(write(from_v3))
    assert_same(original, again)
    # the +05:30 occurred_at keeps its offset, a plain UTC time stays UTC
    disk = again.get("disk")
    assert disk is not None and disk.occurred_at.isoformat() == "2024-12-31T23:59:59.123456+05:30"
    assert [r.id for r in live_records(again)] == [r.id for r in live_records(original)]


def v3_records() -> tuple[SpaceState, dict[str, list[Any]]]:
    state = replay(busy_wal())
    return state, capture_v3(state)


def restore_v3(state: SpaceState, records: dict[str, list[Any]]) -> None:
    snap = decode(encode_v3(state, records))
    restore(
        empty_state(DIM),
        snap.records,
        VectorIndex.from_bytes(snap.index, DIM, "cos"),
        applied_seq=snap.header.applied_seq,
        next_key=snap.header.next_key,
        rejected=snap.header.rejected,
        format=snap.header.format,
    )


@pytest.mark.parametrize("column", COLUMNS)
def test_a_v3_snapshot_missing_a_column_is_refused(column: str) -> None:
    state, records = v3_records()
    del records[column]
    with pytest.raises(SnapshotInvalid, match=f"lack the column '{column}'"):
        restore_v3(state, records)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("key", "one"),
        ("seq", None),
        ("confidence", "high"),
        ("tags", 5),
        ("metadata", [1, 2]),
        ("metadata", "ab"),
        ("occurred_at", "yesterday"),
        ("created_at", 1700000000),
        ("kind", "dream"),
        ("recalls", "many"),
        ("last_recall", "yesterday"),
    ],
)
def test_unreadable_v3_values_are_refused(column: str, value: Any) -> None:
    state, records = v3_records()
    records[column][0] = value
    with pytest.raises(SnapshotInvalid, match="unreadable record"):
        restore_v3(state, records)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: r.update({n: c[::-1] for n, c in r.items() if n in COLUMNS}), "out of order"),
        (lambda r: r["key"].__setitem__(1, r["key"][0]), "share an index key"),
        (lambda r: r["id"].__setitem__(1, r["id"][0]), "distinct"),
        (lambda r: r["seq"].__setitem__(1, r["seq"][0]), "out of order"),
        (lambda r: r["edge.a"].__setitem__(0, 999), "association graph"),
        (lambda r: r["edge.kind"].__setitem__(0, 5), "association graph"),
        (lambda r: r["recent.key"].__setitem__(0, 999), "recent memories"),
        (lambda r: r["tags"].pop(), "differ in length"),
    ],
)
def test_inconsistent_v3_records_are_refused(change: Any, problem: str) -> None:
    state, records = v3_records()
    change(records)
    with pytest.raises(SnapshotInvalid, match=problem):
        restore_v3(state, records)


def test_a_damaged_v3_snapshot_is_refused() -> None:
    state = replay(busy_wal())
    data = bytearray(encode_v3(state))
    data[-100] ^= 1
    with pytest.raises(SnapshotInvalid, match="checksum"):
        decode(bytes(data))
    with pytest.raises(SnapshotInvalid):
        decode(bytes(data[:-1]))
