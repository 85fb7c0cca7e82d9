"""A snapshot restored while its bytes arrive (``Restoring``, as the worker's
``RestoreSink`` drives it): the same state as decoding the whole snapshot, in
whatever chunks the bytes come; the same refusals for damaged, truncated or
overlong bytes, each before the damaged part is used; a snapshot that will not
do (another space's) refused from its header, before its sections are read;
and the index served from the snapshot's bytes until its first change.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engram_worker.core.index import VectorIndex
from engram_worker.core.restoring import Restoring
from engram_worker.core.snapshot import SnapshotHeader, SnapshotInvalid, decode, read_header
from engram_worker.core.state import SpaceState
from tests.helpers import basis_array, empty_state, live_records, remember_body
from tests.unit.test_snapshot import (
    DIM,
    PROPERTY,
    assert_same,
    busy_wal,
    fold,
    forget,
    load,
    more_wal,
    protected_spans,
    reencode,
    replay,
    split,
    write,
)
from tests.unit.test_snapshot_v3 import encode_v3


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


def streamed(
    data: bytes, size: int = 4096, announced: int | None = None, check: str | None = None
) -> SpaceState:
    """``data`` fed ``size`` bytes at a time, as the two threads of a restore
    would (feed, then take what it hands out), then finished."""
    restoring = Restoring(len(data) if announced is None else announced, lambda _: check)
    for chunk in pieces(data, size):
        restoring.take(restoring.feed(chunk))
    return restoring.finish(lambda: empty_state(DIM))[1]


@pytest.fixture(scope="module")
def snapshot() -> bytes:
    return write(replay(busy_wal()))


@pytest.mark.parametrize("size", [1, 7, 100, 4096, 1 << 30])
def test_a_streamed_restore_gives_the_state_decoding_gives(snapshot: bytes, size: int) -> None:
    whole = load(snapshot)
    assert_same(whole, streamed(snapshot, size))


def test_a_streamed_restore_keeps_folding_like_the_original() -> None:
    original = replay(busy_wal())
    restored = streamed(write(original), 1000)
    assert_same(original, restored)
    fold(original, more_wal())
    fold(restored, more_wal())
    assert_same(original, restored)


@PROPERTY
@given(data=st.data())
def test_any_chunking_restores_the_same_state(snapshot: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, len(snapshot) - 1), max_size=12)))
    restoring = Restoring(len(snapshot), lambda _: None)
    for a, b in zip([0, *cuts], [*cuts, len(snapshot)], strict=True):
        restoring.take(restoring.feed(snapshot[a:b]))
    assert_same(load(snapshot), restoring.finish(lambda: empty_state(DIM))[1])


def test_a_format_3_snapshot_streams_too() -> None:
    state = replay(busy_wal())
    assert_same(state, streamed(encode_v3(state), 512))


def test_an_empty_space_streams() -> None:
    state = empty_state(DIM)
    fold(state, [("forget", b"{}", 3)])
    restored = streamed(write(state), 64)
    assert (len(restored), restored.applied_seq) == (0, 3)


# -- refusals ------------------------------------------------------------------


def refused(data: bytes, size: int = 4096, **kw: object) -> str:
    with pytest.raises(SnapshotInvalid) as caught:
        streamed(data, size, **kw)  # type: ignore[arg-type]
    return str(caught.value)


@pytest.mark.parametrize("size", [1, 333, 1 << 30])
def test_a_flipped_byte_anywhere_is_refused(snapshot: bytes, size: int) -> None:
    for _, start, end in protected_spans(snapshot):
        for pos in {start, (start + end) // 2, end - 1}:
            data = bytearray(snapshot)
            data[pos] ^= 0x55
            refused(bytes(data), size)


def test_a_damaged_section_is_refused_before_it_is_handed_out(snapshot: bytes) -> None:
    # the damaged section never reaches take(): the refusal comes from feed()
    header = decode(snapshot).header
    [(_, start, end)] = [s for s in protected_spans(snapshot) if s[0] == "index"]
    data = bytearray(snapshot)
    data[(start + end) // 2] ^= 1
    restoring = Restoring(len(data), lambda _: None)
    handed: list[str] = []

    def feed_all() -> None:
        for chunk in pieces(bytes(data), 256):
            done = restoring.feed(chunk)
            handed.extend(s.name for s, _ in done)
            restoring.take(done)

    with pytest.raises(SnapshotInvalid, match="'index' fails its checksum"):
        feed_all()
    assert handed == [s.name for s in header.sections if s.name != "index"]


@pytest.mark.parametrize("cut", [0, 10, 60, 0.5, -1])
def test_a_truncated_stream_is_refused_at_its_end(snapshot: bytes, cut: float) -> None:
    size = int(cut * len(snapshot)) if isinstance(cut, float) else cut % len(snapshot)
    # the object store announced the whole size; fewer bytes came
    assert "truncated" in refused(snapshot[:size], 100, announced=len(snapshot))


def test_a_snapshot_shorter_than_its_sections_is_refused_from_its_header(
    snapshot: bytes,
) -> None:
    # an object of the truncated size: the header says more is needed
    assert "truncated" in refused(snapshot[:-100], 1 << 30)


def test_bytes_after_the_last_section_are_refused(snapshot: bytes) -> None:
    assert "unexpected bytes" in refused(snapshot + b"x", 1 << 30)
    # and more bytes than the object store announced
    with pytest.raises(SnapshotInvalid, match="more than"):
        streamed(snapshot + b"x", 1 << 30, announced=len(snapshot))


def test_garbage_is_refused_by_its_first_bytes() -> None:
    restoring = Restoring(1 << 20, lambda _: None)
    with pytest.raises(SnapshotInvalid, match="magic"):
        restoring.feed(b"not a snapshot at all")


def test_a_snapshot_that_will_not_do_is_refused_from_its_header(snapshot: bytes) -> None:
    seen: list[SnapshotHeader] = []

    def check(header: SnapshotHeader) -> str | None:
        seen.append(header)
        return "it belongs to an earlier space with this id"

    restoring = Restoring(len(snapshot), check)
    fed: list[int] = []

    def feed_all() -> None:
        for chunk in pieces(snapshot, 512):
            fed.append(len(chunk))
            restoring.take(restoring.feed(chunk))

    with pytest.raises(SnapshotInvalid, match="earlier space"):
        feed_all()
    # refused with the chunk that completed the header, no section read
    assert len(seen) == 1 and sum(fed) < read_header(snapshot)[1] + 512


def test_records_that_do_not_match_the_index_are_refused_at_the_end() -> None:
    # a consistent-looking snapshot whose index lacks a vector the records need
    state = replay(busy_wal())
    data = write(state)
    snap = decode(data)
    fewer = VectorIndex.from_bytes(snap.index, DIM, "cos")
    fewer.remove([int(snap.records["key"][0])])
    fewer.scrub()
    header, records, _ = split(data)
    with pytest.raises(SnapshotInvalid, match="vectors"):
        streamed(reencode(header, records, bytes(fewer.to_bytes())), 300)


# -- the index served from the snapshot's bytes --------------------------------


def test_the_restored_index_is_a_view_until_its_first_change(snapshot: bytes) -> None:
    restored = streamed(snapshot, 1 << 30)
    index = restored.index
    assert index.viewed
    cue = basis_array(DIM, 0)
    before = index.search(cue, 3)
    assert bytes(index.to_bytes()) == bytes(decode(snapshot).index)  # unchanged: same bytes
    # a new memory: the index takes a copy of its own, then changes
    fold(restored, [("remember", _remember("new one", 1), restored.applied_seq + 1)])
    restored.flush()
    assert not index.viewed
    assert "new" in [r.id for r in live_records(restored)]
    assert len(index) == len(restored)
    np.testing.assert_array_equal(index.search(cue, 3)[0][:1], before[0][:1])


def test_a_forget_on_a_viewed_index_takes_its_own_copy_first(snapshot: bytes) -> None:
    restored = streamed(snapshot, 1 << 30)
    victim = live_records(restored)[0]
    fold(restored, [("forget", forget(victim.id), restored.applied_seq + 1)])
    restored.flush()
    assert not restored.index.viewed
    assert victim.id not in [r.id for r in live_records(restored)]
    assert not restored.index.contains_all([victim.key])


def _remember(content: str, axis: int) -> bytes:
    return remember_body(content, memory_id="new", embedding=basis_array(DIM, axis))
