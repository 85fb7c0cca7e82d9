"""The msgspec mirrors of the query requests accept exactly what the pydantic
models (the contract) accept, with the same values, and name errors alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from engram_contract.errors import validation_message
from engram_contract.messages import (
    GetWire,
    ListWire,
    QueryStruct,
    RecallRequest,
    RecallWire,
    StatsWire,
    encode_embedding,
    parse_query,
    parse_recall,
    with_min_seq,
)
from engram_contract.messages.query_structs import MODEL_OF

B64 = encode_embedding([1.0, 0.5, -2.0])

RECALL_CASES: list[Any] = [
    {"query": "cat"},
    {"embedding": [1.0, 2.0]},
    {"embedding_b64": B64, "k": 3, "mode": "hybrid", "hybrid_weight": 1},
    {"query": "x", "k": "5"},  # a form only the model takes (lax): same value
    {"query": "x", "k": 5.0},
    {"query": "x", "trace": "true"},
    {"query": "x", "since": "2024-01-01T00:00:00Z", "until": "2024-01-02T00:00:00+02:00"},
    {"query": "x", "since": "2024-01-01T00:00:00", "until": "2024-01-01T00:00:00Z"},
    {"query": "x", "since": "2024-01-01", "until": "2024-02-01"},
    {"query": "x", "since": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"},
    {"query": "x", "tags": ["a", "b"], "min_seq": 0, "memory_space_id": "abc-1"},
    {"query": "x", "tags": ["a", ""]},
    {"query": "x", "tags": ["t"] * 65},
    {"query": "x", "tags": ["a" * 129]},
    {"query": "x", "memory_space_id": "A"},
    {"query": "x", "min_seq": -1},
    {"query": ""},
    {},
    {"query": "x", "embedding": [1.0]},
    {"embedding": [1.0], "embedding_b64": B64},
    {"embedding_b64": "not base64!"},
    {"embedding_b64": "AAAA" + "AA=="},
    {"embedding_b64": encode_embedding(np.array([np.nan], dtype=np.float32))},
    {"embedding": [1e39]},
    {"embedding": [1.0, "2"]},
    {"embedding": []},
    {"query": "x", "k": 0},
    {"query": "x", "k": 1001},
    {"query": "x", "k": True},
    {"query": "x", "mode": "nearest"},
    {"query": "x", "hop_decay": 0},
    {"query": "x", "hop_decay": 1.0},
    {"query": "x", "threshold": 1.5},
    {"query": "x", "max_hops": 5},
    {"query": "x", "max_fanout": 0},
    {"query": "x", "consistency": "strong"},
    {"query": "x", "consistency": "now"},
    {"query": "x", "typo": 1},
    {"query": None, "embedding": None},
    {"query": "x", "embedding": None},
    [1, 2],
    "x",
]
OTHER_CASES: list[tuple[type[QueryStruct], Any]] = [
    (GetWire, {"memory_id": "m1"}),
    (GetWire, {"memory_id": "m1", "include_embedding": True, "min_seq": 3}),
    (GetWire, {}),
    (GetWire, {"memory_id": 5}),
    (ListWire, {}),
    (ListWire, {"limit": 0}),
    (ListWire, {"limit": 1000, "cursor": "12"}),
    (ListWire, {"limit": "7"}),
    (StatsWire, {}),
    (StatsWire, {"min_seq": -2}),
    (StatsWire, {"memory_space_id": "abc"}),
    (StatsWire, {"nope": 1}),
]


def outcome(struct: type[QueryStruct], data: bytes) -> tuple[str, Any]:
    """``("ok", values)`` or ``("error", the message)`` of the mirror's parse."""
    try:
        req = parse_query(struct, data)
    except ValidationError as exc:
        return "error", validation_message(exc)
    return "ok", msgspec.structs.asdict(req)


def model_outcome(model: type[BaseModel], data: bytes) -> tuple[str, Any]:
    try:
        req = model.model_validate_json(data)
    except ValidationError as exc:
        return "error", validation_message(exc)
    return "ok", req.model_dump()


@pytest.mark.parametrize("case", RECALL_CASES, ids=lambda c: json.dumps(c)[:60])
def test_recall_mirror_agrees_with_the_model(case: Any) -> None:
    data = json.dumps(case).encode()
    assert outcome(RecallWire, data) == model_outcome(RecallRequest, data)


@pytest.mark.parametrize(("struct", "case"), OTHER_CASES, ids=lambda c: str(c)[:40])
def test_other_mirrors_agree_with_their_models(struct: type[QueryStruct], case: Any) -> None:
    data = json.dumps(case).encode()
    assert outcome(struct, data) == model_outcome(MODEL_OF[struct], data)


def test_malformed_json_is_the_models_error() -> None:
    for data in (b"", b"{", b'{"query": "x",}', b"\xff"):
        assert outcome(RecallWire, data)[0] == "error"
        assert outcome(RecallWire, data) == model_outcome(RecallRequest, data)


def test_error_names_the_field_as_everywhere() -> None:
    kind, message = outcome(RecallWire, b'{"query": "x", "tags": ["a", ""]}')
    assert kind == "error"
    assert message.startswith("tags[1]: String should have at least 1 character")
    kind, message = outcome(RecallWire, b'{"embedding": [1.0], "embedding_b64": "AACAPw=="}')
    assert "either embedding or embedding_b64, not both" in message


def test_b64_cue_is_the_vector() -> None:
    vec = np.array([0.25, -1.5, 3.0], dtype=np.float32)
    req = parse_query(RecallWire, json.dumps({"embedding_b64": encode_embedding(vec)}).encode())
    got = req.vector()
    assert got is not None and got.dtype == np.float32
    np.testing.assert_array_equal(got, vec)
    assert req.cue_dim == 3
    listed = parse_query(RecallWire, b'{"embedding": [0.25, -1.5, 3.0]}')
    np.testing.assert_array_equal(listed.vector(), vec)
    assert parse_query(RecallWire, b'{"query": "q"}').vector() is None


def test_min_seq_is_appended_without_encoding_the_vector_again() -> None:
    body = b'{"embedding": [1.0, 2.0], "k": 3}\n'
    req, out = with_min_seq(parse_query(RecallWire, body), body, 42)
    assert out == b'{"embedding": [1.0, 2.0], "k": 3,"min_seq":42}'
    assert req.min_seq == 42 and parse_query(RecallWire, out) == req
    # a body with a min_seq of its own (here null) is encoded anew: no duplicate keys
    body = b'{"query": "x", "min_seq": null}'
    req, out = with_min_seq(parse_query(RecallWire, body), body, 7)
    assert json.loads(out) == {"query": "x", "min_seq": 7}


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2000) | finite | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)
recall_docs = st.dictionaries(
    st.sampled_from(
        [
            "query",
            "embedding",
            "embedding_b64",
            "k",
            "mode",
            "seed_k",
            "max_hops",
            "hop_decay",
            "threshold",
            "max_fanout",
            "hybrid_weight",
            "tags",
            "since",
            "until",
            "trace",
            "reinforce",
            "consistency",
            "min_seq",
            "memory_space_id",
        ]
    ),
    json_values
    | st.sampled_from(["similarity", "hybrid", "eventual", "strong", B64, "abc", "cat"])
    | st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
    | st.lists(finite, min_size=1, max_size=4),
    max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(recall_docs)
def test_mirror_never_accepts_what_the_model_refuses(doc: dict[str, Any]) -> None:
    data = json.dumps(doc).encode()
    assert outcome(RecallWire, data) == model_outcome(RecallRequest, data)


def test_parse_recall_gives_the_checked_vector_once() -> None:
    vec = np.array([0.25, -1.5, 3.0], dtype=np.float32)
    for body in (
        {"embedding_b64": encode_embedding(vec)},
        {"embedding": [0.25, -1.5, 3.0]},
        {"embedding": ["0.25", -1.5, 3.0]},  # the model's lax form: converted
    ):
        req, cue = parse_recall(json.dumps(body).encode())
        assert cue is not None and cue.dtype == np.float32 and req.cue_dim == 3
        np.testing.assert_array_equal(cue, vec)
    with pytest.raises(ValidationError, match="beyond float32 range"):
        parse_recall(b'{"embedding": [1e39]}')
    for n in range(1, 9):  # the dim counted from the base64 length, any padding
        b64 = encode_embedding(np.ones(n, dtype=np.float32))
        assert parse_recall(json.dumps({"embedding_b64": b64}).encode())[0].cue_dim == n


def test_worker_reply_bytes_are_what_the_model_writes() -> None:
    from engram_contract.messages import RecallResponse
    from engram_worker.queries import _encode
    from tests.helpers import broker_time, empty_state

    state = empty_state(8)
    for i in range(5):
        body = {
            "schema_version": 1,
            "command_id": f"c{i}",
            "memory": {"id": f"m{i}", "content": f"memory {i} ü", "tags": ["x"]},
        }
        state.apply_message("remember", json.dumps(body).encode(), i + 1, broker_time(i + 1))
    results = state.recall(state.embed_query("memory 2"), 3, None, None)
    want = RecallResponse(space="abc", applied_seq=5, results=results).model_dump_json()
    got = _encode({"space": "abc", "applied_seq": 5, "results": results})
    assert got == want.encode()
