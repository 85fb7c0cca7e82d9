"""Snapshots: a space's folded state as bytes, and back.

A snapshot is written the way ``SpaceHost.snapshot`` writes one (flush, capture,
scrub, ``to_bytes``, ``encode``) and read the way ``SpaceHost`` restores one
(``decode``, ``VectorIndex.from_bytes``, ``SpaceState.restore`` into a fresh state).

- A restored state answers exactly like the state it was written from, and keeps
  folding like it: snapshot + tail == full replay.
- Damaged, truncated or inconsistent snapshots are refused with ``SnapshotInvalid``
  before any of them is used.
- A forgotten or replaced memory's vector is in no snapshot written after it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram_worker.core.index import VectorIndex
from engram_worker.core.persistence import capture, restore
from engram_worker.core.snapshot import (
    FORMAT,
    MAGIC,
    Section,
    SnapshotHeader,
    SnapshotInvalid,
    decode,
    encode,
    read_header,
)
from engram_worker.core.state import SpaceState
from tests.helpers import (
    EPOCH,
    SPACE,
    basis_array,
    broker_time,
    empty_state,
    json_bytes,
    live_records,
    remember_body,
)

DIM = 16
CUE_TEXTS = ["green tea", "disk full", "alice morning"]
#: the columns with one value per record (tags and metadata are sparse: only the
#: rows that have some, in ``tags.row`` / ``tags.value``)
COLUMNS = (
    "id",
    "key",
    "seq",
    "command_id",
    "content",
    "confidence",
    "occurred_at",
    "created_at",
    "kind",
    "recalls",
    "last_recall",
)
SPARSE = ("tags.row", "tags.value", "metadata.row", "metadata.value")
# the fixed-size prefix: magic, the header's length, the header's SHA-256
PREFIX = len(MAGIC) + 8 + 32

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

Wal = list[tuple[str, bytes, int]]


# -- WAL, write and read --------------------------------------------------------


def forget(memory_id: str, command_id: str = "f") -> bytes:
    return json_bytes({"schema_version": 1, "command_id": command_id, "memory_id": memory_id})


def fold(state: SpaceState, log: Iterable[tuple[str, bytes, int]]) -> None:
    for verb, data, seq in log:
        state.apply_message(verb, data, seq, broker_time(seq))


def replay(log: Wal) -> SpaceState:
    state = empty_state(DIM)
    fold(state, log)
    return state


def header_of(state: SpaceState, **changes: Any) -> SnapshotHeader:
    """The header ``SpaceHost`` would write for ``state`` (``changes`` override fields)."""
    fields: dict[str, Any] = {
        "space": state.space,
        "space_created_at": EPOCH,
        "applied_seq": state.applied_seq,
        "next_key": state.next_key,
        "rejected": state.rejected,
        "memories": len(state),
        "dim": state.dim,
        "metric": state.metric,
        "index_dtype": state.index.dtype,
        "embedder": state.embedder.name,
        "written_at": EPOCH,
        "origin": "replay",
    }
    fields.update(changes)
    return SnapshotHeader(**fields)


def write(state: SpaceState, **header_changes: Any) -> bytes:
    """A snapshot of ``state`` as the host writes one (this scrubs ``state``'s index)."""
    state.flush()
    records = capture(state)
    state.index.scrub()
    index = state.index.to_bytes()
    return b"".join(encode(header_of(state, **header_changes), records, index))


def load(data: bytes) -> SpaceState:
    """A fresh state restored from ``data`` as the host restores one."""
    snap = decode(data)
    state = empty_state(DIM)
    index = VectorIndex.from_bytes(snap.index, state.dim, state.metric)
    restore(
        state,
        snap.records,
        index,
        applied_seq=snap.header.applied_seq,
        next_key=snap.header.next_key,
        rejected=snap.header.rejected,
        format=snap.header.format,
    )
    return state


def split(data: bytes) -> tuple[SnapshotHeader, dict[str, Any], bytes]:
    """A whole snapshot's header, columns (as lists, to edit freely) and index bytes."""
    snap = decode(data)
    cols = {
        name: col.tolist() if isinstance(col, np.ndarray) else col
        for name, col in snap.records.items()
    }
    return snap.header, cols, bytes(snap.index)


def reencode(header: SnapshotHeader, records: dict[str, Any], index: bytes) -> bytes:
    """A snapshot with valid checksums around whatever columns and index it is given
    (edited numeric columns are written as JSON lists: the reader checks them the
    same way)."""
    return b"".join(encode(header, records, index))


def seal(header: SnapshotHeader, sections: Sequence[tuple[str, bytes]]) -> bytes:
    """Arbitrary sections, laid out and checksummed as ``encode`` does."""
    header.sections = [
        Section(name=name, length=len(raw), sha256=hashlib.sha256(raw).hexdigest())
        for name, raw in sections
    ]
    return framed(header.model_dump_json().encode(), *(raw for _, raw in sections))


def framed(head: bytes, *rest: bytes) -> bytes:
    """A header (any bytes) with a valid length and checksum, then ``rest``."""
    digest = hashlib.sha256(head).digest()
    return b"".join([MAGIC, len(head).to_bytes(8, "little"), digest, head, *rest])


def flipped(data: bytes, pos: int, mask: int = 0xFF) -> bytes:
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)


def protected_spans(data: bytes) -> list[tuple[str, int, int]]:
    """Where a snapshot's bytes are guarded: magic, header length, header checksum,
    the header's fields, its section table, the records and the index (name, start,
    end). Together they cover every byte."""
    header, first = read_header(data)
    table = data.index(b'"sections":', PREFIX)
    records = sum(s.length for s in header.sections if s.name != "index")
    return [
        ("magic", 0, len(MAGIC)),
        ("header length", len(MAGIC), len(MAGIC) + 8),
        ("header checksum", len(MAGIC) + 8, PREFIX),
        ("header fields", PREFIX, table),
        ("section table", table, first),
        ("records", first, first + records),
        ("index", first + records, len(data)),
    ]


# -- comparing states -----------------------------------------------------------


def listing(state: SpaceState) -> list[dict[str, Any]]:
    """Every live memory as a client lists it, with its vector."""
    return [
        state.to_memory(rec, include_embedding=True).model_dump(mode="json")
        for rec in live_records(state)
    ]


def paged(state: SpaceState, limit: int) -> list[list[str]]:
    """The ids of each page when walking the space ``limit`` at a time."""
    pages: list[list[str]] = []
    cursor: int | None = 0
    while cursor is not None:
        recs, cursor = state.page(cursor, limit)
        pages.append([r.id for r in recs])
    return pages


def cues(state: SpaceState) -> list[np.ndarray]:
    return [state.embed_query(text) for text in CUE_TEXTS] + [
        basis_array(DIM, 0),
        basis_array(DIM, 3, -1.0),
        np.linspace(-1.0, 1.0, DIM, dtype=np.float32),
    ]


def recall_all(state: SpaceState, cue: np.ndarray) -> dict[str, tuple[float, float, str]]:
    """Recall with k = every memory, keyed by id (the order among exactly equal
    scores is whatever the HNSW index returns)."""
    results = state.recall(cue, max(len(state), 1))
    return {r.memory.id: (r.score, r.similarity, r.memory.content) for r in results}


def assert_same(state: SpaceState, other: SpaceState, *, same_batches: bool = True) -> None:
    """``other`` answers every query exactly like ``state``. Their association
    graphs are compared when both indexed in the same batches: around forgotten
    memories, semantic links depend on what was live when a memory was indexed."""
    assert other.applied_seq == state.applied_seq
    assert other.rejected == state.rejected
    assert other.next_key == state.next_key
    assert len(other) == len(state)
    assert live_records(other) == live_records(state)  # ids, keys, seqs, every field
    if same_batches:
        assert other.graph == state.graph  # every link, explicit or derived
    assert listing(other) == listing(state)
    assert paged(other, 2) == paged(state, 2)
    for rec in live_records(state):
        assert other.get(rec.id) == rec
    for cue in cues(state):
        assert recall_all(other, cue) == recall_all(state, cue)
        assert [r.score for r in other.recall(cue, 3)] == [r.score for r in state.recall(cue, 3)]


# -- a WAL that exercises the fold ----------------------------------------------


def busy_wal() -> Wal:
    """Remembers of every shape, an upsert, a forget, rejections, a gap, a redelivery."""
    return [
        ("remember", remember_body("Alice likes green tea", memory_id="tea", command_id="c1"), 1),
        (
            "remember",
            remember_body(
                "disk full on db-1",
                memory_id="disk",
                command_id="c2",
                embedding=basis_array(DIM, 0),
                confidence=0.7,
                tags=["ops", "db"],
                metadata={"host": "db-1", "sev": "high"},
                occurred_at="2024-12-31T23:59:59.123456+05:30",
            ),
            2,
        ),
        ("remember", remember_body("déjà vu 日本", command_id="no-id-given", tags=["ü"]), 3),
        ("remember", b"\xff not json", 4),
        ("frobnicate", remember_body("unknown verb"), 5),
        (
            "remember",
            remember_body("to be forgotten", memory_id="gone", embedding=basis_array(DIM, 3)),
            6,
        ),
        (
            "remember",
            remember_body("tea v2: Alice prefers oolong", memory_id="tea", command_id="c7"),
            8,
        ),
        ("forget", forget("gone"), 9),
        ("remember", remember_body("zero", memory_id="z", embedding=[0.0] * DIM), 10),  # rejected
        ("remember", remember_body("morning backup ran", memory_id="backup", confidence=0.2), 11),
        ("remember", remember_body("redelivered, skipped", memory_id="dup"), 11),
        (
            "remember",
            remember_body("last", memory_id="last", embedding=basis_array(DIM, 5, -1.0)),
            12,
        ),
    ]


def more_wal() -> Wal:
    """What arrives after the snapshot: upserts and forgets of restored memories,
    a forgotten id coming back, new memories, a stale redelivery, garbage."""
    return [
        ("remember", remember_body("should be skipped", memory_id="late"), 12),
        (
            "remember",
            remember_body("disk replaced", memory_id="disk", embedding=basis_array(DIM, 7)),
            13,
        ),
        ("forget", forget("backup"), 14),
        (
            "remember",
            remember_body("back again", memory_id="gone", embedding=basis_array(DIM, 3)),
            15,
        ),
        ("remember", remember_body("brand new about green tea", memory_id="new"), 16),
        ("remember", b"{}", 17),
        ("forget", forget("nobody"), 18),
        ("remember", remember_body("alice morning walk", command_id="c20"), 20),
    ]


# -- round trip -----------------------------------------------------------------


def test_restored_state_answers_like_the_original() -> None:
    original = replay(busy_wal())
    restored = load(write(original))
    assert restored.applied_seq == 12
    assert restored.rejected == 3  # garbage, unknown verb, zero vector
    assert [r.id for r in live_records(restored)] == [
        "disk",
        "no-id-given",
        "tea",
        "backup",
        "last",
    ]
    assert restored.get("gone") is None
    tea = restored.get("tea")
    assert tea is not None
    assert tea.content == "tea v2: Alice prefers oolong"
    assert tea.seq == 8
    disk = restored.get("disk")
    assert disk is not None
    assert disk.tags == ["ops", "db"]
    assert disk.metadata == {"host": "db-1", "sev": "high"}
    assert disk.occurred_at.isoformat() == "2024-12-31T23:59:59.123456+05:30"
    [top] = restored.recall(basis_array(DIM, 0), 1)
    assert top.memory.id == "disk"
    assert top.similarity == pytest.approx(1.0)
    assert_same(original, restored)


def test_restored_state_keeps_folding_like_the_original() -> None:
    original = replay(busy_wal())
    restored = load(write(original))
    next_key = restored.next_key
    fold(original, more_wal())
    fold(restored, more_wal())
    assert_same(original, restored)
    # snapshot + tail is indistinguishable from replaying the whole WAL (but for
    # links near forgotten memories: the replay indexes in one batch)
    assert_same(replay(busy_wal() + more_wal()), restored, same_batches=False)
    assert restored.applied_seq == 20
    assert restored.get("late") is None  # at or below the snapshot's position
    assert restored.get("backup") is None
    came_back = restored.get("gone")
    assert came_back is not None and came_back.content == "back again"
    keys = [r.key for r in live_records(restored)]
    assert len(set(keys)) == len(keys)
    new_keys = sorted(r.key for r in live_records(restored) if r.seq > 12)
    assert new_keys == list(range(next_key, next_key + len(new_keys)))
    [top] = restored.recall(basis_array(DIM, 7), 1)
    assert (top.memory.id, top.memory.content) == ("disk", "disk replaced")


def test_a_restored_state_can_be_snapshotted_again() -> None:
    original = replay(busy_wal())
    first = write(original)
    restored = load(first)
    second = write(restored)
    assert split(second)[1] == split(first)[1]
    again = load(second)
    assert_same(original, again)
    fold(original, more_wal())
    fold(again, more_wal())
    assert_same(original, again)


def test_empty_space_round_trips_its_position() -> None:
    original = replay([("remember", b"garbage", 3), ("frobnicate", b"{}", 7)])
    restored = load(write(original))
    assert (len(restored), restored.applied_seq, restored.rejected) == (0, 7, 2)
    assert restored.recall(basis_array(DIM, 0), 5) == []
    fold(restored, [("remember", remember_body("first", memory_id="a"), 8)])
    assert [r.memory.id for r in restored.recall(basis_array(DIM, 0), 5)] == ["a"]


def test_space_whose_memories_were_all_forgotten_round_trips() -> None:
    log: Wal = [
        ("remember", remember_body("one", memory_id="a", embedding=basis_array(DIM, 1)), 1),
        ("remember", remember_body("two", memory_id="b", embedding=basis_array(DIM, 2)), 2),
    ]
    original = replay(log)
    original.flush()  # indexed, then forgotten
    fold(original, [("forget", forget("a"), 3), ("forget", forget("b"), 4)])
    restored = load(write(original))
    assert len(restored) == 0
    assert restored.recall(basis_array(DIM, 1), 5) == []
    assert restored.next_key == 3
    fold(
        restored,
        [("remember", remember_body("three", memory_id="c", embedding=basis_array(DIM, 1)), 5)],
    )
    fold(
        original,
        [("remember", remember_body("three", memory_id="c", embedding=basis_array(DIM, 1)), 5)],
    )
    assert_same(original, restored)
    rec = restored.get("c")
    assert rec is not None and rec.key == 3


def test_restore_refuses_a_state_that_is_not_fresh() -> None:
    data = write(replay(busy_wal()))
    snap = decode(data)
    used = replay([("remember", remember_body("already here", memory_id="x"), 1)])
    with pytest.raises(AssertionError, match="fresh"):
        restore(
            used,
            snap.records,
            VectorIndex.from_bytes(snap.index, DIM, "cos"),
            applied_seq=snap.header.applied_seq,
            next_key=snap.header.next_key,
            rejected=snap.header.rejected,
            format=snap.header.format,
        )
    assert [r.id for r in live_records(used)] == ["x"]


# -- round trip, property --------------------------------------------------------

MEMORY_IDS = ["m1", "m2", "m3", "m4"]
words = st.sampled_from(["green", "tea", "disk", "full", "alice", "morning", "x", "déjà", "日本"])
contents = st.lists(words, min_size=1, max_size=5).map(" ".join)
# moderate values: the HNSW's numerics at float32's edges are not what is tested here
f32 = st.floats(min_value=-1e3, max_value=1e3, width=32)
vectors = st.lists(f32, min_size=DIM, max_size=DIM) | st.just([0.0] * DIM)


@st.composite
def remember_bodies(draw: st.DrawFn) -> bytes:
    """A ``remember``; ids from a small pool so upserts happen."""
    memory: dict[str, Any] = {"content": draw(contents)}
    memory_id = draw(st.none() | st.sampled_from(MEMORY_IDS))
    if memory_id is not None:
        memory["id"] = memory_id
    if draw(st.booleans()):
        memory["embedding"] = draw(vectors)
    if draw(st.booleans()):
        memory["confidence"] = draw(st.floats(min_value=0.0, max_value=1.0))
    if draw(st.booleans()):
        memory["tags"] = draw(st.lists(words, max_size=3))
    if draw(st.booleans()):
        memory["metadata"] = draw(st.dictionaries(words, contents, max_size=2))
    if draw(st.booleans()):
        memory["occurred_at"] = draw(
            st.sampled_from(["2020-05-01T10:00:00Z", "1999-12-31T23:59:59.5-08:00"])
        )
    command_id = draw(st.sampled_from(["c1", "c2"]) | st.text(min_size=1, max_size=6))
    return json_bytes({"schema_version": 1, "command_id": command_id, "memory": memory})


messages = st.one_of(
    st.tuples(st.just("remember"), remember_bodies()),
    st.tuples(st.just("remember"), remember_bodies()),
    st.tuples(st.just("forget"), st.sampled_from([*MEMORY_IDS, "nobody"]).map(forget)),
    st.tuples(st.sampled_from(["remember", "forget", "frobnicate"]), st.binary(max_size=24)),
)


@st.composite
def wal_logs(draw: st.DrawFn) -> Wal:
    """A WAL with upserts, forgets, garbage, gaps and redeliveries."""
    entries = draw(st.lists(st.tuples(messages, st.sampled_from([1, 1, 1, 3, 0])), max_size=30))
    seq = 0
    log: Wal = []
    for (verb, data), step in entries:
        seq = max(1, seq + step)
        log.append((verb, data, seq))
    return log


@PROPERTY
@given(log=wal_logs(), data=st.data())
def test_snapshot_then_tail_equals_full_replay(log: Wal, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(log)), label="cut")
    original = replay(log[:cut])
    restored = load(write(original))
    assert_same(original, restored)
    fold(original, log[cut:])
    fold(restored, log[cut:])
    assert_same(original, restored)
    # a full replay indexes in one batch: links near forgotten memories may differ
    assert_same(replay(log), restored, same_batches=False)
    keys = [r.key for r in live_records(restored)]
    assert len(set(keys)) == len(keys)


# -- damage ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot() -> bytes:
    return write(replay(busy_wal()))


def test_the_intact_snapshot_loads(snapshot: bytes) -> None:
    # the baseline for every damage test below
    assert len(load(snapshot)) == 5


@pytest.mark.parametrize(
    "part",
    [
        "magic",
        "header length",
        "header checksum",
        "header fields",
        "section table",
        "records",
        "index",
    ],
)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_flipped_byte_in_any_part_is_refused(snapshot: bytes, part: str, where: str) -> None:
    [(_, start, end)] = [span for span in protected_spans(snapshot) if span[0] == part]
    pos = {"first": start, "middle": (start + end) // 2, "last": end - 1}[where]
    with pytest.raises(SnapshotInvalid):
        decode(flipped(snapshot, pos))


def test_every_single_bit_flip_in_the_guarded_bytes_is_refused(snapshot: bytes) -> None:
    refused = 0
    for _, start, end in protected_spans(snapshot):
        for pos in range(start, end):
            for bit in range(8):
                with pytest.raises(SnapshotInvalid):
                    decode(flipped(snapshot, pos, 1 << bit))
                refused += 1
    assert refused == 8 * len(snapshot)  # the spans cover every byte


def test_truncation_at_every_offset_is_refused(snapshot: bytes) -> None:
    for size in range(len(snapshot)):
        with pytest.raises(SnapshotInvalid):
            decode(snapshot[:size])


@PROPERTY
@given(log=wal_logs(), data=st.data())
def test_any_flipped_byte_or_truncation_is_refused(log: Wal, data: st.DataObject) -> None:
    snap = write(replay(log))
    if data.draw(st.booleans(), label="truncate"):
        damaged = snap[: data.draw(st.integers(min_value=0, max_value=len(snap) - 1))]
    else:
        spans = protected_spans(snap)
        _, start, end = data.draw(st.sampled_from(spans), label="part")
        pos = data.draw(st.integers(min_value=start, max_value=end - 1), label="pos")
        damaged = flipped(snap, pos, data.draw(st.integers(min_value=1, max_value=255)))
    with pytest.raises(SnapshotInvalid):
        decode(damaged)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"ENGRAM-SNAPSHOT",
        b"ENGRAM-SNAPSHOT\r",
        b'{"format": 1}',
        b"engram-snapshot\n" + bytes(8),
    ],
)
def test_data_without_the_magic_is_refused(data: bytes) -> None:
    with pytest.raises(SnapshotInvalid, match="magic"):
        decode(data)


def test_a_bare_usearch_index_is_not_a_snapshot() -> None:
    state = replay(busy_wal())
    state.flush()
    with pytest.raises(SnapshotInvalid, match="magic"):
        decode(bytes(state.index.to_bytes()))


def test_other_magic_is_refused(snapshot: bytes) -> None:
    with pytest.raises(SnapshotInvalid, match="magic"):
        decode(b"ENGRAM-SNAPSHOX\n" + snapshot[len(MAGIC) :])


@pytest.mark.parametrize("fmt", [0, FORMAT + 1, 99])
def test_another_format_number_is_refused(fmt: int) -> None:
    data = write(replay(busy_wal()), format=fmt)
    with pytest.raises(SnapshotInvalid, match=f"format {fmt}"):
        decode(data)
    with pytest.raises(SnapshotInvalid, match="format"):
        read_header(data)


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 100, MAGIC])
def test_bytes_after_the_last_section_are_refused(snapshot: bytes, extra: bytes) -> None:
    with pytest.raises(SnapshotInvalid, match="unexpected bytes"):
        decode(snapshot + extra)


def test_a_second_snapshot_appended_is_refused(snapshot: bytes) -> None:
    with pytest.raises(SnapshotInvalid):
        decode(snapshot + snapshot)


@pytest.mark.parametrize("size", [2**64 - 1, 2**32, 10**6])
def test_a_header_length_beyond_the_data_is_refused(snapshot: bytes, size: int) -> None:
    data = MAGIC + size.to_bytes(8, "little") + snapshot[len(MAGIC) + 8 :]
    with pytest.raises(SnapshotInvalid, match="truncated header"):
        decode(data)


def test_an_unreadable_header_is_refused(snapshot: bytes) -> None:
    head = f'{{"format":{FORMAT},"space":"alpha"}}'.encode()  # required fields missing
    with pytest.raises(SnapshotInvalid, match="unreadable header"):
        decode(framed(head, snapshot[PREFIX:]))


def test_a_header_field_changed_without_its_checksum_is_refused(snapshot: bytes) -> None:
    header, first = read_header(snapshot)
    changed = header.model_copy(update={"applied_seq": header.applied_seq + 1})
    head = changed.model_dump_json().encode()
    forged = (
        snapshot[: len(MAGIC)] + len(head).to_bytes(8, "little") + snapshot[len(MAGIC) + 8 : PREFIX]
    )
    with pytest.raises(SnapshotInvalid, match="header fails its checksum"):
        decode(forged + head + snapshot[first:])


def test_a_snapshot_without_its_index_is_refused(snapshot: bytes) -> None:
    header, _, _ = split(snapshot)
    with pytest.raises(SnapshotInvalid, match="missing sections: index"):
        decode(seal(header, [("id", b"[]")]))


def test_a_section_named_twice_is_refused(snapshot: bytes) -> None:
    header, _, index = split(snapshot)
    with pytest.raises(SnapshotInvalid, match="appears twice"):
        decode(seal(header, [("index", index), ("index", index)]))


@pytest.mark.parametrize(
    ("dtype", "raw", "problem"),
    [
        ("json", b"not json", "not JSON"),
        ("json", b"\xff\xfe", "not JSON"),
        ("<i8", b"1234567", "not a <i8 array"),
        (">i8", b"12345678", "not a >i8 array"),
        ("<U4", b"abcdabcd", "not a <U4 array"),
        ("no such dtype", b"", "no known encoding"),
        (None, b"", "no known encoding"),
        ("utf8[]", b"\x01", "truncated"),
        ("utf8[]", (9).to_bytes(8, "little") + bytes(16), "truncated"),
        ("utf8[]", (1).to_bytes(8, "little") + bytes(8) + (3).to_bytes(8, "little"), "offsets"),
        (
            "utf8[]",
            (1).to_bytes(8, "little") + bytes(8) + (2).to_bytes(8, "little") + b"\xff\xfe",
            "UTF-8",
        ),
    ],
)
def test_a_column_that_is_not_what_it_says_is_refused(
    snapshot: bytes, dtype: str | None, raw: bytes, problem: str
) -> None:
    header, _, index = split(snapshot)
    sections = [("id", raw), ("index", index)]
    data = seal(header, sections)
    # seal writes no dtype: put the one under test into the header
    head, first = read_header(data)
    head.sections[0].dtype = dtype
    with pytest.raises(SnapshotInvalid, match=problem):
        decode(framed(head.model_dump_json().encode(), data[first:]))


@pytest.mark.parametrize("column", COLUMNS + SPARSE)
def test_a_missing_column_is_refused(snapshot: bytes, column: str) -> None:
    header, records, index = split(snapshot)
    del records[column]
    with pytest.raises(SnapshotInvalid, match=f"lack the column '{column}'"):
        load(reencode(header, records, index))


@pytest.mark.parametrize("column", COLUMNS)
def test_columns_of_different_length_are_refused(snapshot: bytes, column: str) -> None:
    header, records, index = split(snapshot)
    records[column] = records[column][:-1]
    with pytest.raises(SnapshotInvalid, match="differ in length"):
        load(reencode(header, records, index))


def test_fewer_records_than_vectors_are_refused(snapshot: bytes) -> None:
    header, records, index = split(snapshot)
    # consistent, one short (the last memory has no tags or metadata)
    records.update({name: records[name][:-1] for name in COLUMNS})
    with pytest.raises(SnapshotInvalid, match=r"4 records \(4 distinct\) but 5 vectors"):
        load(reencode(header, records, index))


def test_more_records_than_vectors_are_refused(snapshot: bytes) -> None:
    header, records, _ = split(snapshot)
    smaller = replay(busy_wal()[:3])
    smaller.flush()
    index = bytes(smaller.index.to_bytes())
    with pytest.raises(SnapshotInvalid, match=r"5 records \(5 distinct\) but 3 vectors"):
        load(reencode(header, records, index))


def test_a_duplicated_id_is_refused(snapshot: bytes) -> None:
    header, records, index = split(snapshot)
    records["id"][1] = records["id"][0]
    with pytest.raises(SnapshotInvalid, match="distinct"):
        load(reencode(header, records, index))


@pytest.mark.parametrize(
    ("change", "value"),
    [("applied_seq", 11), ("applied_seq", 0), ("next_key", 1)],
)
def test_records_beyond_the_snapshot_position_are_refused(
    snapshot: bytes, change: str, value: int
) -> None:
    header, records, index = split(snapshot)
    setattr(header, change, value)
    with pytest.raises(SnapshotInvalid, match="beyond the snapshot's position"):
        load(reencode(header, records, index))


def test_records_out_of_stream_order_are_refused(snapshot: bytes) -> None:
    header, records, index = split(snapshot)
    records = {name: col[::-1] for name, col in records.items()}
    with pytest.raises(SnapshotInvalid, match="out of order"):
        load(reencode(header, records, index))


def test_a_repeated_seq_is_refused(snapshot: bytes) -> None:
    header, records, index = split(snapshot)
    records["seq"][1] = records["seq"][0]
    with pytest.raises(SnapshotInvalid, match="out of order"):
        load(reencode(header, records, index))


def test_a_shared_index_key_is_refused(snapshot: bytes) -> None:
    header, records, index = split(snapshot)
    records["key"][1] = records["key"][0]
    with pytest.raises(SnapshotInvalid, match="share an index key"):
        load(reencode(header, records, index))


def test_a_record_whose_vector_is_not_in_the_index_is_refused(snapshot: bytes) -> None:
    header, records, index = split(snapshot)
    # a key below next_key that no record uses (the busy WAL forgets and upserts)
    records["key"][-1] = max(set(range(header.next_key)) - set(records["key"]))
    with pytest.raises(SnapshotInvalid, match="missing from the index"):
        load(reencode(header, records, index))


def test_bytes_that_usearch_cannot_restore_raise_value_error() -> None:
    for junk in (b"", b"\x00" * 64, b"usearch" * 100):
        with pytest.raises(ValueError, match="not a usearch index"):
            VectorIndex.from_bytes(junk, DIM, "cos")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("key", "one"),
        ("key", 1.5),
        ("seq", None),
        ("confidence", "high"),
        ("tags.value", 5),
        ("tags.value", []),
        ("tags.value", [1]),
        ("tags.row", 99),
        ("metadata.value", [1, 2]),
        ("metadata.value", "ab"),
        ("metadata.value", {"a": 1}),
        ("occurred_at", "yesterday"),
        ("occurred_at", 2**62),
        ("created_at", "1700000000"),
        ("kind", 7),
        ("kind.table", "dream"),
        ("recalls", "many"),
        ("last_recall", "yesterday"),
        ("zone", ["occurred_at", 99, 0]),
        ("zone", ["occurred_at", 0, 86400]),
        ("zone", ["nowhere", 0, 60]),
    ],
)
def test_unreadable_record_values_are_refused(snapshot: bytes, column: str, value: Any) -> None:
    header, records, index = split(snapshot)
    records[column][0] = value
    with pytest.raises(SnapshotInvalid, match="unreadable record"):
        load(reencode(header, records, index))


def test_an_index_of_another_dim_is_refused(snapshot: bytes) -> None:
    snap = decode(snapshot)
    with pytest.raises(ValueError, match="dim"):
        VectorIndex.from_bytes(snap.index, DIM + 1, "cos")


def test_a_refused_snapshot_leaves_the_fresh_state_untouched(snapshot: bytes) -> None:
    header, records, index = split(snapshot)
    records["seq"][0] = "not a number"
    state = empty_state(DIM)
    snap = decode(reencode(header, records, index))
    with pytest.raises(SnapshotInvalid):
        restore(
            state,
            snap.records,
            VectorIndex.from_bytes(snap.index, DIM, "cos"),
            applied_seq=snap.header.applied_seq,
            next_key=snap.header.next_key,
            rejected=snap.header.rejected,
            format=snap.header.format,
        )
    assert (len(state), state.applied_seq, state.next_key) == (0, 0, 1)
    # the state is still fresh: the WAL can be replayed into it instead
    fold(state, busy_wal())
    assert_same(replay(busy_wal()), state)


# -- scrub ----------------------------------------------------------------------


def marked(i: int) -> np.ndarray:
    """A vector along axis ``i`` whose raw float32 bytes occur nowhere else."""
    vec = np.array([(i * DIM + j + 1) / 1024 for j in range(DIM)], dtype=np.float32)
    vec[i] = 7.0 + i / 16
    return vec


def raw(vec: np.ndarray) -> bytes:
    return vec.astype("<f4").tobytes()


def scrub_wal() -> Wal:
    return [
        ("remember", remember_body(f"memory {i}", memory_id=f"m{i}", embedding=marked(i)), i + 1)
        for i in range(6)
    ]


def test_forgotten_and_replaced_vectors_leave_no_trace_in_the_index_bytes() -> None:
    state = replay(scrub_wal())
    state.flush()
    before = bytes(state.index.to_bytes())
    assert all(raw(marked(i)) in before for i in range(6))  # the search below can see them
    fold(
        state,
        [
            ("forget", forget("m1"), 7),
            ("forget", forget("m4"), 8),
            ("remember", remember_body("m2, new", memory_id="m2", embedding=marked(9)), 9),
        ],
    )
    state.flush()
    assert state.index.scrub() > 0
    assert state.index.scrub() == 0  # nothing left to scrub
    after = bytes(state.index.to_bytes())
    for gone in (1, 2, 4):
        assert raw(marked(gone)) not in after
    for kept in (0, 3, 5, 9):
        assert raw(marked(kept)) in after
    for kept, memory_id in [(0, "m0"), (3, "m3"), (5, "m5"), (9, "m2")]:
        [top] = state.recall(marked(kept), 1)
        assert top.memory.id == memory_id
        assert top.similarity == pytest.approx(1.0)
        rec = state.get(memory_id)
        assert rec is not None
        vec = state.indexing.vector(rec.key)
        assert vec is not None and np.array_equal(vec, marked(kept))
    for gone in (1, 4):
        assert f"m{gone}" not in recall_all(state, marked(gone))


def test_a_snapshot_written_after_a_forget_holds_neither_its_vector_nor_its_text() -> None:
    log = [
        *scrub_wal(),
        ("remember", remember_body("the secret plan", memory_id="secret", embedding=marked(7)), 7),
    ]
    state = replay(log)
    state.flush()  # the secret's vector is in the index before it is forgotten
    fold(state, [("forget", forget("secret"), 8)])
    data = write(state)
    assert raw(marked(7)) not in data
    assert b"the secret plan" not in data
    assert all(raw(marked(i)) in data for i in range(6))
    restored = load(data)
    assert restored.get("secret") is None
    assert "secret" not in recall_all(restored, marked(7))
    # written again from the restored state: still nothing
    again = write(restored)
    assert raw(marked(7)) not in again
    assert all(raw(marked(i)) in again for i in range(6))
    [top] = load(again).recall(marked(2), 1)
    assert top.memory.id == "m2"


def test_a_memory_forgotten_before_indexing_never_reaches_the_index() -> None:
    state = replay(scrub_wal())
    fold(state, [("forget", forget("m3"), 7)])  # still buffered, never indexed
    state.flush()
    assert state.index.scrub() == 0
    data = write(state)
    assert raw(marked(3)) not in data
    assert len(load(data)) == 5


def test_scrub_is_a_no_op_when_nothing_was_removed() -> None:
    index = VectorIndex(DIM, "cos", "f32")
    assert index.scrub() == 0
    keys = np.arange(1, 7, dtype=np.uint64)
    index.add(keys, np.stack([marked(i) for i in range(6)]))
    before = bytes(index.to_bytes())
    assert index.scrub() == 0
    assert bytes(index.to_bytes()) == before
    assert len(index) == 6


def test_an_empty_removal_leaves_nothing_to_scrub() -> None:
    index = VectorIndex(DIM, "cos", "f32")
    index.add(np.arange(1, 3, dtype=np.uint64), np.stack([marked(0), marked(1)]))
    index.remove([])
    assert index.scrub() == 0


def test_scrub_counts_the_freed_slots_and_keeps_the_rest_searchable() -> None:
    index = VectorIndex(DIM, "cos", "f32")
    index.add(np.arange(1, 7, dtype=np.uint64), np.stack([marked(i) for i in range(6)]))
    index.remove([2, 5])
    assert index.scrub() == 2
    data = bytes(index.to_bytes())
    assert raw(marked(1)) not in data and raw(marked(4)) not in data
    assert len(index) == 4
    restored = VectorIndex.from_bytes(data, DIM, "cos")
    assert restored.dtype == "f32"
    assert len(restored) == 4
    for key, i in [(1, 0), (3, 2), (4, 3), (6, 5)]:
        keys, sims = restored.search(marked(i), 1)
        assert keys.tolist() == [key]
        assert sims[0] == pytest.approx(1.0)
        vec = restored.get(key)
        assert vec is not None and np.array_equal(vec, marked(i))
    assert restored.get(2) is None and restored.get(5) is None


@settings(max_examples=40, deadline=None)
@given(
    forgotten=st.sets(st.integers(min_value=0, max_value=5)),
    replaced=st.sets(st.integers(min_value=0, max_value=5)),
    flush_between=st.booleans(),
)
def test_no_removed_vector_survives_a_snapshot(
    forgotten: set[int], replaced: set[int], flush_between: bool
) -> None:
    state = replay(scrub_wal())
    state.flush()
    seq = 6
    for i in sorted(replaced):
        seq += 1
        new = remember_body(f"new {i}", memory_id=f"m{i}", embedding=marked(i + 8))
        fold(state, [("remember", new, seq)])
        if flush_between:
            state.flush()
    for i in sorted(forgotten):
        seq += 1
        fold(state, [("forget", forget(f"m{i}"), seq)])
    data = write(state)
    restored = load(data)
    for i in range(6):
        old_live = i not in forgotten and i not in replaced
        new_live = i in replaced and i not in forgotten
        assert (raw(marked(i)) in data) == old_live
        assert (raw(marked(i + 8)) in data) == new_live
        rec = restored.get(f"m{i}")
        assert (rec is not None) == (old_live or new_live)
        if rec is not None:
            [top] = restored.recall(marked(i + 8 if new_live else i), 1)
            assert top.memory.id == f"m{i}"


def test_the_header_describes_the_snapshot(snapshot: bytes) -> None:
    header, _ = read_header(snapshot)
    assert header.space == SPACE
    assert header.memories == 5
    names = [s.name for s in header.sections]
    assert names[-1] == "index"
    assert set(COLUMNS + SPARSE) <= set(names)
    assert header.format == FORMAT == 4
