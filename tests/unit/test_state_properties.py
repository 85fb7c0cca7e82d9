"""Invariants of the space fold, checked with Hypothesis.

- Replaying the same WAL gives the same state, whatever the flush timing.
- Any bytes under any verb either fold or are rejected: the fold never raises.
- Recall scores stay in [0, 1] and only live memories come back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram_contract.messages import encode_embedding
from engram_worker.core.events import Rejected, Stored
from engram_worker.core.state import SpaceState
from tests.helpers import broker_time, empty_state, live_ids, live_records

DIM = 8
MEMORY_IDS = ["m1", "m2", "m3", "m4", "m5"]
CUE_TEXTS = ["green tea", "disk full", "x"]

PROPERTY = settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class WalMessage:
    verb: str
    data: bytes
    seq: int


# -- strategies -----------------------------------------------------------------

words = st.sampled_from(
    ["green", "tea", "disk", "full", "backup", "alice", "morning", "error", "x", "déjà", "日本"]
)
contents = st.lists(words, min_size=1, max_size=6).map(" ".join)
# Any finite float32 value, including huge and subnormal ones: the WAL carries float32.
f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
vectors = st.lists(f32, min_size=DIM, max_size=DIM)
unit_interval = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def remember_bodies(draw: st.DrawFn) -> bytes:
    """A valid ``remember`` body; ids come from a small pool so upserts happen."""
    memory: dict[str, Any] = {"content": draw(contents)}
    memory_id = draw(st.none() | st.sampled_from(MEMORY_IDS))
    if memory_id is not None:
        memory["id"] = memory_id
    form = draw(st.sampled_from(["text", "list", "b64"]))
    if form == "list":
        memory["embedding"] = draw(vectors)
    elif form == "b64":
        memory["embedding_b64"] = encode_embedding(draw(vectors))
    if draw(st.booleans()):
        memory["confidence"] = draw(unit_interval)
    if draw(st.booleans()):
        memory["tags"] = draw(st.lists(words, max_size=3))
    command_id = draw(st.sampled_from(["c1", "c2", "c3"]) | st.text(min_size=1, max_size=8))
    return json.dumps({"schema_version": 1, "command_id": command_id, "memory": memory}).encode()


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
memory_keys = st.sampled_from(
    ["content", "id", "embedding", "embedding_b64", "confidence", "tags", "metadata", "occurred_at"]
)


@st.composite
def near_miss_bodies(draw: st.DrawFn) -> bytes:
    """Bodies shaped like commands with arbitrary values: they explore validation."""
    memory = draw(st.dictionaries(memory_keys | st.text(max_size=6), json_values, max_size=5))
    doc: dict[str, Any] = {
        "schema_version": draw(st.sampled_from([1, 1, 2, "1", None, 1.0, True])),
        "command_id": draw(json_values),
        "memory": memory,
    }
    for key in draw(st.lists(st.sampled_from(list(doc)), max_size=2)):
        doc.pop(key, None)
    return json.dumps(doc).encode()


garbage = st.binary(max_size=64)
any_body = st.one_of(
    remember_bodies(),
    near_miss_bodies(),
    garbage,
    json_values.map(lambda v: json.dumps(v).encode()),
)
verbs = st.sampled_from(["remember", "remember", "remember", "forget", "frobnicate", ""]) | st.text(
    max_size=10
)


@st.composite
def wal_logs(draw: st.DrawFn) -> list[WalMessage]:
    """A WAL: mostly valid remembers, some garbage, gaps and redeliveries in seqs."""
    entries = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["remember"] * 6 + ["frobnicate"]),
                st.one_of(remember_bodies(), remember_bodies(), near_miss_bodies(), garbage),
                st.sampled_from([1, 1, 1, 2, 5, 0]),  # 0: redelivered sequence
            ),
            max_size=40,
        )
    )
    seq = 0
    log: list[WalMessage] = []
    for verb, data, step in entries:
        seq = max(1, seq + step)
        log.append(WalMessage(verb, data, seq))
    return log


# -- helpers --------------------------------------------------------------------


def replay(log: list[WalMessage], flush_every: int | None = None) -> SpaceState:
    state = empty_state(DIM)
    for i, msg in enumerate(log, start=1):
        state.apply_message(msg.verb, msg.data, msg.seq, broker_time(msg.seq))
        if flush_every is not None and i % flush_every == 0:
            state.flush()
    return state


def snapshot(state: SpaceState) -> list[dict[str, Any]]:
    """Every live memory, as a client would list it, with its vector."""
    return [
        state.to_memory(rec, include_embedding=True).model_dump(mode="json")
        for rec in live_records(state)
    ]


def cues(state: SpaceState) -> list[np.ndarray]:
    return [state.embed_query(text) for text in CUE_TEXTS] + [
        np.eye(DIM, dtype=np.float32)[0],
        np.full(DIM, -1.0, dtype=np.float32),
    ]


def recall_all(state: SpaceState, cue: np.ndarray) -> dict[str, tuple[float, float, str]]:
    """Recall with k = every memory, keyed by id.

    Keyed, because the order among exactly equal scores is whatever the HNSW index
    returns, and that varies between identical builds (multi-threaded inserts)."""
    results = state.recall(cue, max(len(state), 1))
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    return {r.memory.id: (r.score, r.similarity, r.memory.content) for r in results}


# -- properties -----------------------------------------------------------------


@PROPERTY
@given(log=wal_logs())
def test_replaying_a_wal_twice_gives_the_same_state(log: list[WalMessage]) -> None:
    first = replay(log)
    second = replay(log)
    assert first.applied_seq == second.applied_seq == max((m.seq for m in log), default=0)
    assert first.rejected == second.rejected
    assert live_records(first) == live_records(second)
    assert snapshot(first) == snapshot(second)
    for cue in cues(first):
        assert recall_all(first, cue) == recall_all(second, cue)
        top_first = [r.score for r in first.recall(cue, 3)]
        assert top_first == [r.score for r in second.recall(cue, 3)]


@PROPERTY
@given(log=wal_logs(), flush_every=st.integers(min_value=1, max_value=4))
def test_flush_timing_does_not_change_the_state(log: list[WalMessage], flush_every: int) -> None:
    # Live tailing flushes in small batches, replay in one: same records, same recall.
    tailed = replay(log, flush_every=flush_every)
    replayed = replay(log)
    assert snapshot(tailed) == snapshot(replayed)
    for cue in cues(replayed):
        assert recall_all(tailed, cue) == recall_all(replayed, cue)


@PROPERTY
@given(
    log=wal_logs(),
    data=st.data(),
)
def test_replacements_during_in_flight_flushes_never_resurface(
    log: list[WalMessage], data: st.DataObject
) -> None:
    # Detach a batch at random points, keep folding, insert it later: recall and
    # paging only ever show the newest version of each id.
    state = empty_state(DIM)
    batch = None
    for msg in log:
        state.apply_message(msg.verb, msg.data, msg.seq, broker_time(msg.seq))
        if batch is None and data.draw(st.booleans(), label="take"):
            batch = state.indexing.take()
        elif batch is not None and data.draw(st.booleans(), label="run"):
            state.indexing.run(batch)
            batch = None
    if batch is not None:
        state.indexing.run(batch)
    reference = replay(log)
    assert snapshot(state) == snapshot(reference)
    newest = {rec.id: rec.seq for rec in live_records(reference)}
    for cue in cues(state):
        results = state.recall(cue, max(len(state), 1))
        assert len(results) == len(newest)
        for r in results:
            assert newest[r.memory.id] == r.memory.seq


@settings(max_examples=100, deadline=None)
@given(verb=verbs, data=any_body, seq=st.integers(min_value=1, max_value=2**40))
def test_any_bytes_under_any_verb_fold_or_are_rejected(verb: str, data: bytes, seq: int) -> None:
    state = empty_state(DIM)
    event = state.apply_message(verb, data, seq, broker_time(1))
    assert state.applied_seq == seq
    if isinstance(event, Rejected):
        assert event.seq == seq
        assert event.reason
        assert state.rejected == 1
        assert len(state) == 0
        assert live_ids(state) == []
    else:
        assert isinstance(event, Stored)
        assert verb == "remember"
        assert state.rejected == 0
        assert live_ids(state) == [event.memory_id]
        rec = state.get(event.memory_id)
        assert rec is not None
        assert rec.seq == seq
        [result] = state.recall(np.eye(DIM, dtype=np.float32)[0], 3)
        assert result.memory.id == event.memory_id


@PROPERTY
@given(log=wal_logs(), cue=vectors, text=contents, k=st.integers(min_value=1, max_value=50))
def test_recall_scores_are_bounded_and_only_live_memories_return(
    log: list[WalMessage], cue: list[float], text: str, k: int
) -> None:
    state = replay(log)
    live = set(live_ids(state))
    for vector in (np.asarray(cue, dtype=np.float32), state.embed_query(text)):
        results = state.recall(vector, k)
        assert len(results) == min(k, len(live))
        ids = [r.memory.id for r in results]
        assert len(set(ids)) == len(ids)
        assert set(ids) <= live
        scores = [r.score for r in results]
        assert scores == sorted(scores, reverse=True)
        for r in results:
            assert 0.0 <= r.score <= 1.0
            assert 0.0 <= r.activation <= 1.0
            rec = state.get(r.memory.id)
            assert rec is not None
            assert r.memory.seq == rec.seq
            assert r.memory.content == rec.content
