"""The space fold: ``SpaceState.apply_message`` fed raw WAL bodies, then queried."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from engram_contract.messages import MemoryStored, encode_embedding
from engram_worker.core.events import Forgotten, Rejected, Stored
from engram_worker.core.state import SpaceState
from tests.helpers import (
    EPOCH,
    SPACE,
    basis_array,
    broker_time,
    empty_state,
    json_bytes,
    live_ids,
    live_records,
    remember_body,
)

DIM = 16


@pytest.fixture
def state() -> SpaceState:
    return empty_state(DIM)


def stored(state: SpaceState, data: bytes, seq: int, verb: str = "remember") -> Stored:
    event = state.apply_message(verb, data, seq, broker_time(seq))
    assert isinstance(event, Stored), event
    return event


def rejected(state: SpaceState, data: bytes, seq: int, verb: str = "remember") -> Rejected:
    event = state.apply_message(verb, data, seq, broker_time(seq))
    assert isinstance(event, Rejected), event
    return event


def recall_ids(state: SpaceState, cue: np.ndarray, k: int = 10) -> list[str]:
    return [r.memory.id for r in state.recall(cue, k)]


# -- remember -------------------------------------------------------------------


def test_remember_stores_the_memory(state: SpaceState) -> None:
    event = stored(
        state,
        remember_body(
            "Alice likes green tea",
            memory_id="m1",
            command_id="c1",
            embedding=basis_array(DIM, 0),
            confidence=0.9,
            tags=["drink", "alice"],
            metadata={"source": "chat"},
        ),
        seq=1,
    )
    assert event.message(SPACE) == MemoryStored(
        space=SPACE, seq=1, memory_id="m1", command_id="c1", replaced=False
    )
    assert len(state) == 1
    assert state.applied_seq == 1
    mem = state.to_memory(state.get("m1"))  # type: ignore[arg-type]
    assert mem.id == "m1"
    assert mem.content == "Alice likes green tea"
    assert mem.confidence == 0.9
    assert mem.tags == ["drink", "alice"]
    assert mem.metadata == {"source": "chat"}
    assert mem.seq == 1
    assert mem.created_at == broker_time(1)
    assert mem.occurred_at == broker_time(1)  # defaults to store time
    assert mem.embedding is None  # only when asked


def test_occurred_at_is_kept_when_given(state: SpaceState) -> None:
    stored(state, remember_body("trip", memory_id="m1", occurred_at="2020-05-01T10:00:00Z"), 1)
    rec = state.get("m1")
    assert rec is not None
    assert rec.occurred_at == datetime(2020, 5, 1, 10, tzinfo=UTC)
    assert rec.created_at == broker_time(1)


def test_naive_broker_timestamp_is_taken_as_utc(state: SpaceState) -> None:
    state.apply_message("remember", remember_body("x", memory_id="m1"), 1, datetime(2025, 3, 1, 12))
    rec = state.get("m1")
    assert rec is not None
    assert rec.created_at == datetime(2025, 3, 1, 12, tzinfo=UTC)


def test_aware_broker_timestamp_is_kept(state: SpaceState) -> None:
    when = datetime(2025, 3, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    state.apply_message("remember", remember_body("x", memory_id="m1"), 1, when)
    rec = state.get("m1")
    assert rec is not None
    assert rec.created_at == when


def test_memory_id_defaults_to_the_command_id(state: SpaceState) -> None:
    event = stored(state, remember_body("no id given", command_id="01HXYZ"), 1)
    assert event.memory_id == "01HXYZ"
    assert state.get("01HXYZ") is not None


def test_recall_finds_a_memory_by_its_own_vector(state: SpaceState) -> None:
    vec = np.linspace(-1.0, 1.0, DIM, dtype=np.float32)
    stored(state, remember_body("target", memory_id="m1", embedding=vec, confidence=0.9), 1)
    stored(state, remember_body("other", memory_id="m2", embedding=basis_array(DIM, 3)), 2)
    results = state.recall(vec, 1)
    assert len(results) == 1
    top = results[0]
    assert top.memory.id == "m1"
    assert top.memory.content == "target"
    assert top.similarity == pytest.approx(1.0, abs=1e-5)
    assert top.activation == pytest.approx(1.0, abs=1e-5)
    assert top.confidence == 0.9
    assert top.score == pytest.approx(0.9, abs=1e-5)
    assert top.hops == 0


def test_embedding_b64_in_the_wal_is_used_as_is(state: SpaceState) -> None:
    vec = basis_array(DIM, 5)
    doc = {
        "schema_version": 1,
        "command_id": "c1",
        "memory": {
            "id": "m1",
            "content": "from the gateway",
            "embedding_b64": encode_embedding(vec),
        },
    }
    stored(state, json_bytes(doc), 1)
    assert recall_ids(state, vec, 1) == ["m1"]
    np.testing.assert_array_equal(
        state.to_memory(state.get("m1"), include_embedding=True).embedding,  # type: ignore[arg-type]
        vec,
    )


def test_memory_without_embedding_is_embedded_from_its_text() -> None:
    state = empty_state(64)
    texts = {
        "fox": "the quick brown fox jumps over the lazy dog",
        "tea": "Alice drinks green tea every morning",
        "ops": "the nightly backup job failed with a disk full error",
    }
    for seq, (memory_id, text) in enumerate(texts.items(), start=1):
        stored(state, remember_body(text, memory_id=memory_id), seq)
    for memory_id, text in texts.items():
        top = state.recall(state.embed_query(text), 1)[0]
        assert top.memory.id == memory_id
        assert top.similarity == pytest.approx(1.0, abs=1e-5)
    rec = state.get("tea")
    assert rec is not None
    vec = state.to_memory(rec, include_embedding=True).embedding
    np.testing.assert_allclose(vec, state.embedder.embed([texts["tea"]])[0], atol=1e-6)  # type: ignore[arg-type]


# -- upsert ---------------------------------------------------------------------


def test_same_id_replaces_the_memory(state: SpaceState) -> None:
    stored(state, remember_body("old text", memory_id="m1", embedding=basis_array(DIM, 0)), 1)
    stored(state, remember_body("keep", memory_id="m2", embedding=basis_array(DIM, 2)), 2)
    event = stored(
        state, remember_body("new text", memory_id="m1", embedding=basis_array(DIM, 1)), 3
    )
    assert event.replaced is True
    assert len(state) == 2
    # Stream order: the replacement is the newest version.
    assert [(r.id, r.content, r.seq) for r in live_records(state)] == [
        ("m2", "keep", 2),
        ("m1", "new text", 3),
    ]
    # The old vector is gone: a cue equal to it finds nothing similar.
    results = state.recall(basis_array(DIM, 0), 10)
    assert sorted(r.memory.id for r in results) == ["m1", "m2"]
    for r in results:
        assert r.memory.content != "old text"
        assert r.similarity == pytest.approx(0.0, abs=1e-5)
    top = state.recall(basis_array(DIM, 1), 1)[0]
    assert (top.memory.id, top.memory.content) == ("m1", "new text")
    assert top.similarity == pytest.approx(1.0, abs=1e-5)


def test_replacing_after_the_old_version_was_indexed(state: SpaceState) -> None:
    stored(state, remember_body("old", memory_id="m1", embedding=basis_array(DIM, 0)), 1)
    state.flush()
    stored(state, remember_body("new", memory_id="m1", embedding=basis_array(DIM, 1)), 2)
    results = state.recall(basis_array(DIM, 0), 10)
    assert [(r.memory.id, r.memory.content) for r in results] == [("m1", "new")]
    assert results[0].similarity == pytest.approx(0.0, abs=1e-5)


def test_replacing_while_a_flush_batch_is_in_flight(state: SpaceState) -> None:
    stored(state, remember_body("old", memory_id="m1", embedding=basis_array(DIM, 0)), 1)
    stored(state, remember_body("other", memory_id="m2", embedding=basis_array(DIM, 4)), 2)
    batch = state.indexing.take()
    assert batch is not None
    # The fold goes on while the batch is being inserted (in a thread, in the worker).
    stored(state, remember_body("new", memory_id="m1", embedding=basis_array(DIM, 1)), 3)
    state.indexing.run(batch)

    results = state.recall(basis_array(DIM, 0), 10)
    assert sorted(r.memory.id for r in results) == ["m1", "m2"]
    m1 = next(r for r in results if r.memory.id == "m1")
    assert m1.memory.content == "new"
    assert m1.similarity == pytest.approx(0.0, abs=1e-5)  # not the old vector
    top = state.recall(basis_array(DIM, 1), 1)[0]
    assert (top.memory.id, top.memory.content) == ("m1", "new")
    assert top.similarity == pytest.approx(1.0, abs=1e-5)
    assert [(r.id, r.content) for r in live_records(state)] == [("m2", "other"), ("m1", "new")]


def test_replacing_twice_while_in_flight_keeps_only_the_last(state: SpaceState) -> None:
    stored(state, remember_body("v1", memory_id="m1", embedding=basis_array(DIM, 0)), 1)
    batch = state.indexing.take()
    assert batch is not None
    stored(state, remember_body("v2", memory_id="m1", embedding=basis_array(DIM, 1)), 2)
    stored(state, remember_body("v3", memory_id="m1", embedding=basis_array(DIM, 2)), 3)
    state.indexing.run(batch)
    for axis in range(3):
        results = state.recall(basis_array(DIM, axis), 10)
        assert [(r.memory.id, r.memory.content) for r in results] == [("m1", "v3")]
    assert state.recall(basis_array(DIM, 2), 1)[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_embedding_is_visible_while_its_batch_is_in_flight(state: SpaceState) -> None:
    vec = np.arange(DIM, dtype=np.float32)
    stored(state, remember_body("x", memory_id="m1", embedding=vec), 1)
    batch = state.indexing.take()
    assert batch is not None
    rec = state.get("m1")
    assert rec is not None
    np.testing.assert_array_equal(state.to_memory(rec, include_embedding=True).embedding, vec)
    state.indexing.run(batch)


def test_memory_stored_while_a_batch_is_in_flight_is_recalled(state: SpaceState) -> None:
    stored(state, remember_body("first", memory_id="m1", embedding=basis_array(DIM, 0)), 1)
    batch = state.indexing.take()
    assert batch is not None
    stored(state, remember_body("second", memory_id="m2", embedding=basis_array(DIM, 1)), 2)
    state.indexing.run(batch)
    assert recall_ids(state, basis_array(DIM, 1), 1) == ["m2"]
    assert recall_ids(state, basis_array(DIM, 0), 1) == ["m1"]


def test_a_often_updated_memory_does_not_crowd_out_others(state: SpaceState) -> None:
    # Old versions must leave the index, or they fill the candidate list of recall.
    near = (basis_array(DIM, 0) + 0.3 * basis_array(DIM, 1)).astype(np.float32)
    stored(state, remember_body("neighbour", memory_id="other", embedding=near), 1)
    for seq in range(2, 102):
        stored(
            state,
            remember_body(f"version {seq}", memory_id="hot", embedding=basis_array(DIM, 0)),
            seq,
        )
        if seq % 2:
            state.flush()  # some versions reach the index before they are replaced
    results = state.recall(basis_array(DIM, 0), 2)
    assert [(r.memory.id, r.memory.content) for r in results] == [
        ("hot", "version 101"),
        ("other", "neighbour"),
    ]


def test_rejected_replacement_keeps_the_old_version(state: SpaceState) -> None:
    stored(state, remember_body("good", memory_id="m1", embedding=basis_array(DIM, 0)), 1)
    event = rejected(state, remember_body("bad", memory_id="m1", embedding=[1.0, 2.0]), 2)
    assert "dim" in event.reason
    results = state.recall(basis_array(DIM, 0), 10)
    assert [(r.memory.id, r.memory.content) for r in results] == [("m1", "good")]
    assert results[0].similarity == pytest.approx(1.0, abs=1e-5)


# -- position -------------------------------------------------------------------


def test_messages_at_or_below_the_position_are_skipped(state: SpaceState) -> None:
    stored(state, remember_body("original", memory_id="m1", embedding=basis_array(DIM, 0)), 5)
    before = [(r.id, r.content, r.seq) for r in live_records(state)]

    for seq in (5, 4, 1):  # a redelivery and an older replay
        again = remember_body(f"replayed {seq}", memory_id="m1", embedding=basis_array(DIM, 1))
        assert state.apply_message("remember", again, seq, broker_time(seq)) is None
        assert state.apply_message("remember", b"garbage", seq, broker_time(seq)) is None
    assert state.apply_message("frobnicate", b"{}", 5, broker_time(5)) is None

    assert state.applied_seq == 5
    assert state.rejected == 0
    assert [(r.id, r.content, r.seq) for r in live_records(state)] == before
    assert recall_ids(state, basis_array(DIM, 0), 10) == ["m1"]
    assert state.recall(basis_array(DIM, 0), 1)[0].similarity == pytest.approx(1.0, abs=1e-5)

    # The next sequence is applied as usual.
    stored(state, remember_body("next", memory_id="m2"), 6)
    assert state.applied_seq == 6


def test_position_follows_gaps_in_the_stream(state: SpaceState) -> None:
    # Forgotten (erased) messages leave gaps in stream sequences.
    stored(state, remember_body("a", memory_id="a1"), 3)
    stored(state, remember_body("b", memory_id="b1"), 10)
    assert state.applied_seq == 10
    assert (
        state.apply_message("remember", remember_body("c", memory_id="c1"), 7, broker_time(7))
        is None
    )
    assert state.get("c1") is None


# -- rejected messages ----------------------------------------------------------

VALID = {"schema_version": 1, "command_id": "c-bad", "memory": {"content": "x"}}


@pytest.mark.parametrize(
    ("verb", "data", "reason"),
    [
        pytest.param("remember", b"not json", "not JSON", id="not-json"),
        pytest.param("remember", b"", "not JSON", id="empty"),
        pytest.param("remember", b"\x80\xfe\xff", "not JSON", id="not-utf8"),
        pytest.param("remember", b'{"schema_version": 1', "not JSON", id="truncated"),
        pytest.param("remember", b"[1, 2, 3]", "expected a JSON object", id="array"),
        pytest.param("remember", b'"remember"', "expected a JSON object", id="string"),
        pytest.param("remember", b"null", "expected a JSON object", id="null"),
        pytest.param(
            "remember",
            json_bytes({**VALID, "schema_version": 2}),
            "unsupported schema_version 2; expected 1",
            id="schema-2",
        ),
        pytest.param(
            "remember",
            json_bytes({"command_id": "c", "memory": {"content": "x"}}),
            "unsupported schema_version None",
            id="no-schema-version",
        ),
        pytest.param(
            "remember",
            json_bytes({"schema_version": 1, "memory": {"content": "x"}}),
            "command_id: Field required",
            id="no-command-id",
        ),
        pytest.param(
            "remember",
            json_bytes({"schema_version": 1, "command_id": "c"}),
            "memory: Field required",
            id="no-memory",
        ),
        pytest.param(
            "remember",
            json_bytes({"schema_version": 1, "command_id": "c", "memory": {"id": "m"}}),
            "memory.content: Field required",
            id="no-content",
        ),
        pytest.param(
            "remember",
            json_bytes({**VALID, "memory": {"content": "   "}}),
            "memory.content: Value error, must not be blank",
            id="blank-content",
        ),
        pytest.param(
            "remember",
            remember_body("x", embedding=[0.5] * (DIM - 1)),
            f"memory.embedding: expected {DIM} values (the space's dim), got {DIM - 1}",
            id="wrong-dim",
        ),
        pytest.param(
            "remember",
            json_bytes(
                {
                    **VALID,
                    "memory": {"content": "x", "embedding_b64": encode_embedding([1.0] * 32)},
                }
            ),
            f"expected {DIM} values (the space's dim), got 32",
            id="wrong-dim-b64",
        ),
        pytest.param(
            "remember",
            b'{"schema_version": 1, "command_id": "c", "memory": '
            b'{"content": "x", "embedding": [NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}}',
            "finite",
            id="nan-literal",
        ),
        pytest.param(
            "remember",
            json_bytes({**VALID, "memory": {"content": "x", "embedding_b64": "%%%"}}),
            "not valid base64",
            id="bad-b64",
        ),
        pytest.param(
            "remember",
            json_bytes({**VALID, "memory": {"content": "x", "confidence": 1.5}}),
            "memory.confidence",
            id="confidence",
        ),
        pytest.param(
            "remember",
            json_bytes({**VALID, "memory": {"content": "x", "colour": "red"}}),
            "memory.colour: Extra inputs are not permitted",
            id="unknown-field",
        ),
        pytest.param(
            "frobnicate", json_bytes(VALID), "unknown command 'frobnicate'", id="unknown-verb"
        ),
        pytest.param("", json_bytes(VALID), "unknown command ''", id="empty-verb"),
    ],
)
def test_messages_that_cannot_fold_are_rejected_with_a_reason(
    state: SpaceState, verb: str, data: bytes, reason: str
) -> None:
    stored(state, remember_body("kept", memory_id="m1", embedding=basis_array(DIM, 0)), 1)
    records_before = [(r.id, r.content, r.seq) for r in live_records(state)]

    event = rejected(state, data, 2, verb)

    assert event.message(SPACE).space == SPACE
    assert event.seq == 2
    assert reason in event.reason
    assert state.applied_seq == 2  # the space moves on
    assert state.rejected == 1
    assert len(state) == 1
    assert [(r.id, r.content, r.seq) for r in live_records(state)] == records_before
    results = state.recall(basis_array(DIM, 0), 10)
    assert [(r.memory.id, r.memory.content) for r in results] == [("m1", "kept")]
    # A later valid message still folds.
    stored(state, remember_body("after", memory_id="m2"), 3)
    assert state.rejected == 1


def test_rejection_carries_the_command_id_when_it_can_be_read(state: SpaceState) -> None:
    event = rejected(state, remember_body("x", command_id="cmd-42", embedding=[1.0]), 1)
    assert event.command_id == "cmd-42"
    event = rejected(state, json_bytes({**VALID, "schema_version": 9}), 2)
    assert event.command_id == "c-bad"
    event = rejected(state, b"{", 3)
    assert event.command_id is None
    assert state.rejected == 3


def test_unknown_verb_reason_lists_the_known_commands(state: SpaceState) -> None:
    event = rejected(state, json_bytes(VALID), 1, verb="frobnicate")
    assert event.reason == (
        "unknown command 'frobnicate'; "
        "known commands: consolidate, forget, link, reinforce, remember"
    )


def test_validation_reason_is_short_and_located(state: SpaceState) -> None:
    memory = {f"extra{i}": i for i in range(20)} | {"content": "x"}
    event = rejected(state, json_bytes({**VALID, "memory": memory}), 1)
    assert event.reason.startswith("invalid message: memory.extra")
    assert event.reason.count("Extra inputs are not permitted") == 5  # capped
    assert len(event.reason) < 500


# Regression: json.loads raises plain ValueError (int over 4300 digits) and
# RecursionError (deep nesting); both used to escape apply_message.
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"1" * 5000, id="huge-int"),
        pytest.param(b'{"schema_version": ' + b"9" * 5000 + b"}", id="huge-int-field"),
        pytest.param(b"[" * 100_000, id="deep-array"),
        pytest.param(b'{"a":' * 100_000, id="deep-object"),
    ],
)
def test_hostile_json_is_rejected_not_raised(state: SpaceState, data: bytes) -> None:
    event = rejected(state, data, 1)
    assert event.reason
    assert len(event.reason) < 500  # the reason is published; it stays small
    assert state.applied_seq == 1
    assert state.rejected == 1
    stored(state, remember_body("after", memory_id="m1"), 2)  # the space goes on


# Regression: a value finite as float64 but inf as float32 used to be stored as inf,
# and recall then returned NaN scores.
def test_embedding_overflowing_float32_is_rejected_at_fold(state: SpaceState) -> None:
    stored(state, remember_body("ok", memory_id="ok", embedding=basis_array(DIM, 0)), 1)
    vec = [1e39] + [0.0] * (DIM - 1)
    event = rejected(state, remember_body("big", memory_id="big", embedding=vec), 2)
    assert "float32" in event.reason
    assert state.get("big") is None
    results = state.recall(basis_array(DIM, 0), 10)
    assert [r.memory.id for r in results] == ["ok"]
    assert results[0].score == pytest.approx(0.7, abs=1e-5)


# -- paging ---------------------------------------------------------------------


def test_paging_walks_stream_order_without_duplicates(state: SpaceState) -> None:
    seq = 0
    expected: list[str] = []
    for i in range(10):
        seq += 1 + i % 3  # gaps, as after erasures
        stored(state, remember_body(f"memory {i}", memory_id=f"m{i}"), seq)
        expected.append(f"m{i}")
    seq += 1
    rejected(state, b"junk", seq)
    seq += 1
    stored(state, remember_body("memory 3, again", memory_id="m3"), seq)  # moves to the end
    expected.remove("m3")
    expected.append("m3")

    seen: list[str] = []
    cursor = 0
    pages = 0
    while True:
        recs, next_cursor = state.page(cursor, 3)
        pages += 1
        assert len(recs) <= 3
        assert [r.seq for r in recs] == sorted(r.seq for r in recs)
        assert all(r.seq > cursor for r in recs)
        seen.extend(r.id for r in recs)
        if next_cursor is None:
            break
        assert next_cursor == recs[-1].seq
        cursor = next_cursor
    assert seen == expected
    assert len(set(seen)) == len(seen)
    assert pages == 4  # 10 live memories, 3 per page
    assert state.get("m3").content == "memory 3, again"  # type: ignore[union-attr]


def test_last_full_page_has_no_next_cursor(state: SpaceState) -> None:
    for i in range(1, 7):
        stored(state, remember_body(f"m{i}", memory_id=f"m{i}"), i)
    first, cursor = state.page(0, 3)
    assert [r.id for r in first] == ["m1", "m2", "m3"]
    assert cursor == 3
    second, cursor = state.page(cursor, 3)
    assert [r.id for r in second] == ["m4", "m5", "m6"]
    assert cursor is None


def test_page_after_everything_is_empty(state: SpaceState) -> None:
    stored(state, remember_body("x", memory_id="m1"), 1)
    assert state.page(1, 10) == ([], None)
    assert state.page(999, 10) == ([], None)
    assert empty_state(DIM).page(0, 10) == ([], None)


def test_page_cursor_between_sequences(state: SpaceState) -> None:
    for seq in (2, 4, 6):
        stored(state, remember_body("x", memory_id=f"m{seq}"), seq)
    recs, cursor = state.page(3, 10)
    assert [r.id for r in recs] == ["m4", "m6"]
    assert cursor is None


# -- recall scores --------------------------------------------------------------


def test_recall_scores_are_sorted_bounded_and_k_limited(state: SpaceState) -> None:
    rng = np.random.default_rng(7)
    for seq in range(1, 41):
        stored(
            state,
            remember_body(
                f"memory {seq}",
                memory_id=f"m{seq}",
                embedding=rng.normal(size=DIM),
                confidence=float(rng.uniform()),
            ),
            seq,
        )
    cue = rng.normal(size=DIM).astype(np.float32)
    for k in (1, 5, 40, 100):
        results = state.recall(cue, k)
        assert len(results) == min(k, 40)
        scores = [r.score for r in results]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert len({r.memory.id for r in results}) == len(results)
        for r in results:
            assert r.score == pytest.approx(r.activation * r.confidence)
            assert 0.0 <= r.activation <= 1.0


def test_recall_ranks_by_confidence_weighted_similarity(state: SpaceState) -> None:
    cue = basis_array(DIM, 0)
    close = (basis_array(DIM, 0) + 0.2 * basis_array(DIM, 1)).astype(np.float32)
    stored(
        state,
        remember_body("exact but doubtful", memory_id="doubt", embedding=cue, confidence=0.1),
        1,
    )
    stored(
        state, remember_body("close and sure", memory_id="sure", embedding=close, confidence=1.0), 2
    )
    results = state.recall(cue, 2)
    assert [r.memory.id for r in results] == ["sure", "doubt"]
    assert results[1].similarity > results[0].similarity


def test_opposite_memory_scores_zero_not_negative(state: SpaceState) -> None:
    stored(
        state, remember_body("opposite", memory_id="neg", embedding=basis_array(DIM, 0, -1.0)), 1
    )
    [result] = state.recall(basis_array(DIM, 0), 5)
    assert result.similarity == pytest.approx(-1.0, abs=1e-5)
    assert result.activation == 0.0
    assert result.score == 0.0


def test_recall_on_an_empty_space_finds_nothing(state: SpaceState) -> None:
    assert state.recall(basis_array(DIM, 0), 10) == []


def test_recall_refuses_a_cue_of_the_wrong_dim(state: SpaceState) -> None:
    stored(state, remember_body("x", memory_id="m1"), 1)
    with pytest.raises(ValueError, match=f"3 values; space has dim {DIM}"):
        state.recall(np.ones(3, dtype=np.float32), 1)


def test_recall_sees_memories_applied_since_the_last_flush(state: SpaceState) -> None:
    stored(state, remember_body("a", memory_id="a", embedding=basis_array(DIM, 0)), 1)
    assert recall_ids(state, basis_array(DIM, 0), 1) == ["a"]
    stored(state, remember_body("b", memory_id="b", embedding=basis_array(DIM, 1)), 2)
    assert state.pending == 1
    assert recall_ids(state, basis_array(DIM, 1), 1) == ["b"]


# -- embeddings on read ---------------------------------------------------------


def test_to_memory_returns_the_stored_vector_before_and_after_flush(state: SpaceState) -> None:
    vec = np.array([(-1) ** i * (i + 1) / DIM for i in range(DIM)], dtype=np.float32)
    stored(state, remember_body("x", memory_id="m1", embedding=vec), 1)
    rec = state.get("m1")
    assert rec is not None
    assert state.pending == 1
    before = state.to_memory(rec, include_embedding=True).embedding
    np.testing.assert_array_equal(before, vec)
    state.flush()
    assert state.pending == 0
    after = state.to_memory(rec, include_embedding=True).embedding
    np.testing.assert_allclose(after, vec, rtol=1e-6)  # type: ignore[arg-type]
    assert state.to_memory(rec).embedding is None


def test_embedding_b64_payload_is_what_recall_returns(state: SpaceState) -> None:
    vec = np.linspace(0.1, 1.6, DIM, dtype=np.float32)
    b64 = base64.b64encode(vec.astype("<f4").tobytes()).decode()
    doc = {**VALID, "memory": {"id": "m1", "content": "x", "embedding_b64": b64}}
    stored(state, json_bytes(doc), 1)
    state.flush()
    got = state.to_memory(state.get("m1"), include_embedding=True).embedding  # type: ignore[arg-type]
    np.testing.assert_allclose(got, vec, rtol=1e-6)  # type: ignore[arg-type]


def test_two_states_share_nothing() -> None:
    a, b = empty_state(DIM), empty_state(DIM)
    a.apply_message(
        "remember", remember_body("secret", memory_id="m1", embedding=basis_array(DIM, 0)), 1, EPOCH
    )
    assert len(b) == 0
    assert b.recall(basis_array(DIM, 0), 10) == []
    assert live_ids(a) == ["m1"]


def test_zero_vector_is_rejected_in_a_cosine_space(state: SpaceState) -> None:
    """A zero vector has no direction: storing it would make every cosine score 0 or NaN."""
    event = rejected(state, remember_body("x", embedding=[0.0] * DIM), 1)
    assert "all zeros" in event.reason
    assert len(state) == 0


def forget(memory_id: str, command_id: str = "f") -> bytes:
    return json_bytes({"schema_version": 1, "command_id": command_id, "memory_id": memory_id})


def test_forget_drops_the_memory_and_names_the_message_to_erase(state: SpaceState) -> None:
    stored(state, remember_body("secret", memory_id="s", embedding=basis_array(DIM, 0)), 1)
    stored(state, remember_body("other", memory_id="o", embedding=basis_array(DIM, 1)), 2)
    event = state.apply_message("forget", forget("s"), 3, broker_time(3))
    assert isinstance(event, Forgotten)
    assert event.existed is True
    assert event.erased_seq == 1
    assert live_ids(state) == ["o"]
    assert [r.memory.id for r in state.recall(basis_array(DIM, 0), 10)] == ["o"]
    assert state.applied_seq == 3


def test_forgetting_an_unknown_id_is_a_no_op(state: SpaceState) -> None:
    stored(state, remember_body("kept", memory_id="k", embedding=basis_array(DIM, 0)), 1)
    event = state.apply_message("forget", forget("nobody"), 2, broker_time(2))
    assert isinstance(event, Forgotten)
    assert event.existed is False
    assert event.erased_seq is None
    assert live_ids(state) == ["k"]


def test_upsert_names_the_replaced_message_to_erase(state: SpaceState) -> None:
    stored(state, remember_body("v1", memory_id="x", embedding=basis_array(DIM, 0)), 1)
    event = stored(state, remember_body("v2", memory_id="x", embedding=basis_array(DIM, 1)), 2)
    assert event.replaced is True
    assert event.replaced_seq == 1
