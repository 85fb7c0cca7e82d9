"""The wire contract: validation of memories, batches, recall requests and embeddings."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engram_contract.messages import (
    DEFAULT_CONFIDENCE,
    MAX_BATCH,
    MAX_CONTENT_BYTES,
    MemoryBatch,
    MemoryIn,
    RecallRequest,
    decode_embedding,
    encode_embedding,
)


def errors_of(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value)


# -- content --------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", " ", "   ", "\n\t ", "\u3000"])
def test_empty_or_blank_content_is_refused(content: str) -> None:
    with pytest.raises(ValidationError) as info:
        MemoryIn(content=content)
    assert "content" in errors_of(info)


def test_content_is_required() -> None:
    with pytest.raises(ValidationError) as info:
        MemoryIn.model_validate({"confidence": 0.5})
    assert "content" in errors_of(info)


def test_content_of_exactly_100_kib_is_accepted() -> None:
    assert MAX_CONTENT_BYTES == 100 * 1024
    mem = MemoryIn(content="x" * MAX_CONTENT_BYTES)
    assert len(mem.content) == MAX_CONTENT_BYTES


def test_content_one_byte_over_100_kib_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        MemoryIn(content="x" * (MAX_CONTENT_BYTES + 1))
    assert "100 KiB" in errors_of(info)


@pytest.mark.parametrize(("char", "width"), [("é", 2), ("€", 3), ("😀", 4)])
def test_content_limit_counts_utf8_bytes_not_characters(char: str, width: int) -> None:
    fits = MAX_CONTENT_BYTES // width
    assert MemoryIn(content=char * fits).content == char * fits
    # Far fewer than 100 Ki characters, but over 100 KiB once encoded.
    too_big = fits + 1
    assert too_big < MAX_CONTENT_BYTES
    with pytest.raises(ValidationError) as info:
        MemoryIn(content=char * too_big)
    assert "100 KiB" in errors_of(info)


# -- confidence -----------------------------------------------------------------


def test_confidence_defaults_to_0_7() -> None:
    assert DEFAULT_CONFIDENCE == 0.7
    assert MemoryIn(content="x").confidence == 0.7


@pytest.mark.parametrize("confidence", [0.0, 0.5, 1.0])
def test_confidence_inside_unit_interval_is_accepted(confidence: float) -> None:
    assert MemoryIn(content="x", confidence=confidence).confidence == confidence


@pytest.mark.parametrize("confidence", [-0.01, 1.01, -1.0, 2.0, math.nan, math.inf, -math.inf])
def test_confidence_outside_unit_interval_is_refused(confidence: float) -> None:
    with pytest.raises(ValidationError) as info:
        MemoryIn(content="x", confidence=confidence)
    assert "confidence" in errors_of(info)


# -- embeddings -----------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_embedding_values_are_refused(bad: float) -> None:
    with pytest.raises(ValidationError) as info:
        MemoryIn(content="x", embedding=[0.1, bad, 0.3])
    assert "embedding" in errors_of(info)
    assert "finite" in errors_of(info)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_literals_in_embedding_are_refused(literal: str) -> None:
    with pytest.raises(ValidationError) as info:
        MemoryIn.model_validate_json(f'{{"content": "x", "embedding": [0.5, {literal}]}}')
    assert "embedding" in errors_of(info)


def test_nan_json_literal_in_confidence_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        MemoryIn.model_validate_json('{"content": "x", "confidence": NaN}')
    assert "confidence" in errors_of(info)


# Regression: 1e39 is a finite double but inf as float32 (the WAL and index type);
# it used to be accepted, stored as inf and turn every recall score into NaN.
@pytest.mark.parametrize("big", [1e39, -3.5e38, 1e300])
def test_embedding_values_that_overflow_float32_are_refused(big: float) -> None:
    with pytest.raises(ValidationError) as info:
        MemoryIn(content="x", embedding=[0.1, big, 0.3])
    assert "float32" in errors_of(info)


def test_largest_float32_embedding_value_is_accepted() -> None:
    biggest = float(np.finfo(np.float32).max)
    vec = MemoryIn(content="x", embedding=[biggest, -biggest]).vector()
    assert vec is not None
    assert np.isfinite(vec).all()


def test_recall_embedding_values_that_overflow_float32_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        RecallRequest(embedding=[0.1, 1e39, 0.3])
    assert "float32" in errors_of(info)


def test_embedding_list_becomes_a_float32_vector() -> None:
    vec = MemoryIn(content="x", embedding=[0.25, -1.5, 3.0]).vector()
    assert vec is not None
    assert vec.dtype == np.float32
    np.testing.assert_array_equal(vec, np.array([0.25, -1.5, 3.0], dtype=np.float32))


def test_embedding_b64_becomes_the_encoded_vector() -> None:
    original = np.array([0.25, -1.5, 3.0, 1e-7], dtype=np.float32)
    vec = MemoryIn(content="x", embedding_b64=encode_embedding(original)).vector()
    assert vec is not None
    np.testing.assert_array_equal(vec, original)


def test_memory_without_embedding_has_no_vector_yet() -> None:
    assert MemoryIn(content="embed me later").vector() is None


def test_embedding_and_embedding_b64_together_are_refused() -> None:
    b64 = encode_embedding([1.0, 2.0])
    with pytest.raises(ValidationError) as info:
        MemoryIn(content="x", embedding=[1.0, 2.0], embedding_b64=b64)
    assert "either embedding or embedding_b64, not both" in errors_of(info)


@pytest.mark.parametrize(
    ("b64", "expected"),
    [
        pytest.param("not base64!!", "not valid base64", id="bad-chars"),
        pytest.param("AAA", "not valid base64", id="bad-padding"),
        pytest.param("AAAA AAAA", "not valid base64", id="whitespace"),
        pytest.param("AAAA", "whole float32", id="three-bytes"),
        pytest.param(base64.b64encode(b"\0" * 6).decode(), "whole float32", id="six-bytes"),
    ],
)
def test_bad_embedding_b64_is_refused_with_the_reason(b64: str, expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        MemoryIn(content="x", embedding_b64=b64)
    assert expected in errors_of(info)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_embedding_b64_is_refused(bad: float) -> None:
    b64 = base64.b64encode(struct.pack("<3f", 0.5, bad, 0.5)).decode()
    with pytest.raises(ValidationError) as info:
        MemoryIn(content="x", embedding_b64=b64)
    assert "NaN or infinite" in errors_of(info)


def test_encode_embedding_is_little_endian_float32_base64() -> None:
    assert encode_embedding([1.0]) == base64.b64encode(b"\x00\x00\x80\x3f").decode()
    assert encode_embedding(np.array([1.0, -2.0], dtype=np.float64)) == (
        base64.b64encode(struct.pack("<2f", 1.0, -2.0)).decode()
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(width=32), max_size=64))
def test_embedding_b64_round_trips_bit_exactly(values: list[float]) -> None:
    original = np.array(values, dtype=np.float32)
    decoded = decode_embedding(encode_embedding(original))
    assert decoded.dtype == np.float32
    assert decoded.tobytes() == original.tobytes()


@pytest.mark.parametrize("b64", ["@@@@", "AAA", "AAAA"])
def test_decode_embedding_raises_value_error_on_bad_input(b64: str) -> None:
    with pytest.raises(ValueError, match="embedding_b64"):
        decode_embedding(b64)


# -- shape of the model -----------------------------------------------------------


@pytest.mark.parametrize("field", ["conf", "text", "embeddings", "space"])
def test_unknown_fields_are_refused_by_name(field: str) -> None:
    doc: dict[str, Any] = {"content": "x", field: 1}
    with pytest.raises(ValidationError) as info:
        MemoryIn.model_validate(doc)
    assert field in errors_of(info)
    assert "Extra inputs are not permitted" in errors_of(info)


def test_memory_in_is_immutable() -> None:
    mem = MemoryIn(content="x")
    with pytest.raises(ValidationError):
        mem.content = "y"  # type: ignore[misc]


@pytest.mark.parametrize("memory_id", ["m1", "a" * 128, "user@host:note.1_x-2"])
def test_good_memory_ids_are_accepted(memory_id: str) -> None:
    assert MemoryIn(content="x", id=memory_id).id == memory_id


@pytest.mark.parametrize("memory_id", ["", "-m", "a" * 129, "a b", "a/b", "a\nb"])
def test_bad_memory_ids_are_refused(memory_id: str) -> None:
    with pytest.raises(ValidationError) as info:
        MemoryIn(content="x", id=memory_id)
    assert "id" in errors_of(info)


# -- batches --------------------------------------------------------------------


def test_batch_of_1000_memories_is_accepted() -> None:
    batch = MemoryBatch(memories=[MemoryIn(content=f"m{i}") for i in range(MAX_BATCH)])
    assert len(batch.memories) == MAX_BATCH == 1000


def test_batch_over_1000_memories_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        MemoryBatch(memories=[MemoryIn(content=f"m{i}") for i in range(MAX_BATCH + 1)])
    assert "memories" in errors_of(info)


def test_empty_batch_is_refused() -> None:
    with pytest.raises(ValidationError):
        MemoryBatch(memories=[])


def test_one_bad_memory_fails_the_batch_and_is_located() -> None:
    with pytest.raises(ValidationError) as info:
        MemoryBatch.model_validate({"memories": [{"content": "ok"}, {"content": " "}]})
    assert "memories.1" in errors_of(info)


# -- recall requests ------------------------------------------------------------


def test_recall_by_text() -> None:
    req = RecallRequest(query="what did I eat")
    assert req.query == "what did I eat"
    assert req.embedding is None
    assert req.k == 10
    assert req.consistency == "read_your_writes"


def test_recall_by_vector() -> None:
    req = RecallRequest(embedding=[0.1, 0.2], k=3)
    assert req.embedding == [0.1, 0.2]
    assert req.query is None


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({}, id="neither"),
        pytest.param({"query": "x", "embedding": [0.1]}, id="both"),
        pytest.param({"k": 5}, id="neither-with-k"),
    ],
)
def test_recall_needs_exactly_one_cue(doc: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        RecallRequest.model_validate(doc)
    assert "exactly one cue" in errors_of(info)


def test_recall_query_must_not_be_empty() -> None:
    with pytest.raises(ValidationError):
        RecallRequest(query="")


@pytest.mark.parametrize("k", [1, 1000])
def test_recall_k_bounds_are_inclusive(k: int) -> None:
    assert RecallRequest(query="x", k=k).k == k


@pytest.mark.parametrize("k", [0, -1, 1001])
def test_recall_k_outside_bounds_is_refused(k: int) -> None:
    with pytest.raises(ValidationError) as info:
        RecallRequest(query="x", k=k)
    assert "k" in errors_of(info)


def test_recall_embedding_must_be_finite() -> None:
    with pytest.raises(ValidationError):
        RecallRequest.model_validate_json('{"embedding": [0.1, NaN]}')


def test_recall_unknown_consistency_is_refused() -> None:
    with pytest.raises(ValidationError):
        RecallRequest.model_validate({"query": "x", "consistency": "sometimes"})
