"""The WAL's fast decoder never accepts what the contract's models refuse, and what
it accepts it reads exactly as they do.

``fast_decode`` (msgspec) is what keeps the fold near the speed of reading the
stream; ``decode_command`` (the pydantic models) is the contract. A message the
fast path takes must be one the models take, with the same values, or the fold
would store what a client was promised is invalid, or store it differently after
a replay than before.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engram_contract.ids import MEMORY_ID_PATTERN
from engram_contract.messages import MAX_CONTENT_BYTES, encode_embedding
from engram_worker.core.wal import (
    CommandRejected,
    Decoded,
    Forget,
    Remember,
    decode,
    decode_command,
    fast_decode,
    from_model,
)
from engram_worker.positions import position, stored_at

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def referee(verb: str, data: bytes) -> Decoded | None:
    try:
        return from_model(decode_command(verb, data))
    except CommandRejected:
        return None


def assert_same(fast: Decoded, ref: Decoded) -> None:
    assert type(fast) is type(ref)
    if isinstance(fast, Forget):
        assert fast == ref
        return
    assert isinstance(ref, Remember)
    assert (fast.command_id, fast.memory_id, fast.content) == (
        ref.command_id,
        ref.memory_id,
        ref.content,
    )
    assert fast.confidence == ref.confidence
    assert math.copysign(1, fast.confidence) == math.copysign(1, ref.confidence)
    assert fast.tags == ref.tags and fast.metadata == ref.metadata
    assert fast.occurred_at == ref.occurred_at
    if fast.occurred_at is not None and ref.occurred_at is not None:
        assert fast.occurred_at.utcoffset() == ref.occurred_at.utcoffset()
        assert fast.occurred_at.isoformat() == ref.occurred_at.isoformat()
    if fast.vector is None or ref.vector is None:
        assert fast.vector is None and ref.vector is None
    else:
        assert fast.vector.dtype == ref.vector.dtype == np.float32
        assert fast.vector.tobytes() == ref.vector.tobytes()


def check(verb: str, data: bytes) -> Decoded | None:
    fast = fast_decode(verb, data)
    ref = referee(verb, data)
    if fast is not None:
        assert ref is not None, f"fast path accepted what the models refuse: {data[:300]!r}"
        assert_same(fast, ref)
    return fast


# -- generated messages ---------------------------------------------------------

_floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
_odd_floats = st.sampled_from([0.0, -0.0, 1e-45, 1e-40, 1e-20, 3.4e38, 1e20, 2e19, -1.0, 1.0])


def _vector_bytes(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


b64_values = st.one_of(
    st.lists(st.one_of(_floats32, _odd_floats), min_size=0, max_size=8).map(
        lambda v: base64.b64encode(_vector_bytes(v)).decode()
    ),
    st.text(alphabet="ABCDabcd0189+/=-_ \n", max_size=24),
    st.sampled_from(["", "AAAA", "AAA", "AAA=", "AA==", "AA", "A===", "====", "AAAA\n", " AAAA"]),
    st.sampled_from(["AACAPw==", "AACAPwAAgD8=", "AACAPw", "AACAPwAAgD8", "-_-_AAAA"]),
)
embedding_lists = st.lists(
    st.one_of(
        _floats32,
        _odd_floats,
        st.integers(-(2**70), 2**70),
        st.sampled_from([1e39, -1e39, 1e-50, 5e-324]),
    ),
    max_size=6,
)
ids = st.one_of(
    st.none(),
    st.from_regex(MEMORY_ID_PATTERN, fullmatch=True),
    st.text(max_size=10),
    st.sampled_from(["m0\n", "m0 ", " m0", "-m", "m" * 128, "m" * 129, "é", "", "m\x00"]),
)
contents = st.one_of(
    st.text(min_size=0, max_size=20),
    st.sampled_from(["a", " ", "\u3000", "\n\t", "\ud800", "x\udfff", "é" * 3, "\x00"]),
    st.sampled_from([MAX_CONTENT_BYTES, MAX_CONTENT_BYTES + 1]).map(lambda n: "a" * n),
    st.sampled_from(["é" * (MAX_CONTENT_BYTES // 2), "é" * (MAX_CONTENT_BYTES // 2 + 1)]),
    st.sampled_from(["😀" * (MAX_CONTENT_BYTES // 4), "😀" * (MAX_CONTENT_BYTES // 4) + "a"]),
)
short_texts = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "t", "t" * 128, "t" * 129, "é" * 128, "😀" * 128, "😀" * 129]),
)
tag_lists = st.one_of(
    st.lists(short_texts, max_size=4),
    st.sampled_from([64, 65]).map(lambda n: [f"t{i}" for i in range(n)]),
    st.sampled_from([None, "tag", [1], [None]]),
)
metadata_maps = st.one_of(
    st.dictionaries(short_texts, st.one_of(short_texts, st.sampled_from(["v" * 4097])), max_size=3),
    st.sampled_from([64, 65]).map(lambda n: {f"k{i}": "v" for i in range(n)}),
    st.sampled_from([None, [], {"k": 1}, {"k": None}, {"": "v"}, {"k": "v" * 4096}]),
)
dates = st.one_of(
    st.none(),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.datetimes().map(lambda d: d.isoformat() + "+05:30"),
    st.sampled_from(
        [
            "2025-01-01T00:00:00Z",
            "2025-01-01T00:00:00z",
            "2025-01-01t00:00:00Z",
            "2025-01-01 00:00:00Z",
            "2025-01-01T00:00:00.1234567Z",
            "2025-01-01T00:00:00.9999995Z",
            "2025-01-01T00:00:00.123Z",
            "2025-01-01T00:00:00+00:00",
            "2025-01-01T00:00:00-00:00",
            "2025-01-01T00:00:00+23:59",
            "2025-01-01T00:00:00+24:00",
            "2025-01-01T23:59:60Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T00:00Z",
            "2025-01-01T00:00:00",
            "2025-01-01",
            "2025-02-30T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "20250101T000000Z",
            "2025-01-01T00:00:00+0100",
            "",
            "now",
        ]
    ),
    st.sampled_from([0, 1700000000, 1.5, True]),
)
confidences = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 0.0, -0.0, 1.0, 0.5, 1.0000001, -1e-300, 2, "0.5", True, None]),
)
command_ids = st.one_of(
    st.text(min_size=0, max_size=4),
    st.sampled_from(["c" * 200, "c" * 201, "😀" * 200, "😀" * 201, "c1"]),
    st.sampled_from([None, 7]),
)
versions = st.sampled_from([1, 1, 1, 1.0, True, "1", 2, 0, None, "missing"])


def mostly(valid: st.SearchStrategy[Any], edge: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values four times in five: a message has many fields, and one bad
    one refuses it, so half the generated messages should be acceptable."""
    return st.integers(0, 4).flatmap(lambda i: valid if i else edge)


_finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
_offsets = st.sampled_from(["", "Z", "+00:00", "+05:30", "-08:00", "+14:00"])
valid = {
    "command_id": st.text(min_size=1, max_size=12),
    "content": st.text(min_size=1, max_size=30).filter(str.strip),
    "id": st.from_regex(MEMORY_ID_PATTERN, fullmatch=True),
    "embedding": st.lists(_finite32, min_size=1, max_size=8),
    "embedding_b64": st.lists(_finite32, min_size=1, max_size=8).map(
        lambda v: base64.b64encode(_vector_bytes(v)).decode()
    ),
    "confidence": st.floats(0.0, 1.0),
    "tags": st.lists(st.text(min_size=1, max_size=8), max_size=4),
    "metadata": st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3),
    "occurred_at": st.tuples(st.datetimes(), _offsets).map(lambda t: t[0].isoformat() + t[1]),
}
edge = {
    "command_id": command_ids,
    "content": contents,
    "id": ids,
    "embedding": embedding_lists,
    "embedding_b64": b64_values,
    "confidence": confidences,
    "tags": tag_lists,
    "metadata": metadata_maps,
    "occurred_at": dates,
}
fields = {name: mostly(valid[name], edge[name]) for name in valid}


@st.composite
def memories(draw: st.DrawFn) -> dict[str, Any]:
    mem: dict[str, Any] = {"content": draw(fields["content"])}
    for name in ("id", "embedding", "embedding_b64", "confidence", "tags", "metadata"):
        if draw(st.booleans()):
            mem[name] = draw(fields[name])
    if draw(st.booleans()):
        mem["occurred_at"] = draw(fields["occurred_at"])
    if draw(st.integers(0, 20)) == 0:
        mem["extra"] = 1
    if draw(st.integers(0, 20)) == 0:
        del mem["content"]
    return mem


@st.composite
def remember_docs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"command_id": draw(fields["command_id"]), "memory": draw(memories())}
    version = draw(mostly(st.just(1), versions))
    if version != "missing":
        doc["schema_version"] = version
    if draw(st.integers(0, 20)) == 0:
        doc["other"] = True
    return doc


def dump(doc: Any, ascii_only: bool) -> bytes:
    return json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@PROPERTY
@given(doc=remember_docs(), ascii_only=st.booleans())
@example(
    doc={"schema_version": 1, "command_id": "c", "memory": {"content": "a", "id": "m0\n"}},
    ascii_only=True,
)
@example(  # parsers round or cut a 7th fraction digit differently
    doc={
        "schema_version": 1,
        "command_id": "c",
        "memory": {"content": "a", "occurred_at": "2025-01-01T00:00:00.1234567Z"},
    },
    ascii_only=True,
)
@example(
    doc={"schema_version": True, "command_id": "c", "memory": {"content": "a"}}, ascii_only=True
)
def test_fast_remember_agrees_with_the_models(doc: dict[str, Any], ascii_only: bool) -> None:
    check("remember", dump(doc, ascii_only))


@PROPERTY
@given(
    command_id=fields["command_id"],
    memory_id=fields["id"],
    version=mostly(st.just(1), versions),
    extra=st.booleans(),
)
def test_fast_forget_agrees_with_the_models(
    command_id: Any, memory_id: Any, version: Any, extra: bool
) -> None:
    doc: dict[str, Any] = {"command_id": command_id, "memory_id": memory_id}
    if version != "missing":
        doc["schema_version"] = version
    if extra:
        doc["memory"] = {}
    check("forget", dump(doc, True))


@PROPERTY
@given(data=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_are_never_accepted_by_the_fast_path_alone(data: bytes) -> None:
    check("remember", data)
    check("forget", data)


@pytest.mark.parametrize(
    "raw",
    [
        # duplicated keys: JSON parsers differ; the fast path must read them as the models do
        b'{"schema_version":1,"command_id":"a","command_id":"b","memory":{"content":"x"}}',
        b'{"schema_version":1,"command_id":"a","memory":{"content":"x","content":"y"}}',
        b'{"schema_version":1,"command_id":"a","memory":{"content":"x"},"memory":{"content":"y"}}',
        b'{"schema_version":2,"schema_version":1,"command_id":"a","memory":{"content":"x"}}',
        b'{"schema_version":1,"command_id":"a","memory":{"content":"x","tags":["a"],"tags":[]}}',
        # JSON the standard library reads but strict parsers do not
        b'{"schema_version":1,"command_id":"a","memory":{"content":"x","confidence":NaN}}',
        b'\xef\xbb\xbf{"schema_version":1,"command_id":"a","memory":{"content":"x"}}',
        b'{"schema_version":1,"command_id":"a","memory":{"content":"x"}} ',
        b' {"schema_version":1,"command_id":"a","memory":{"content":"x"}}',
        b'{"schema_version":1,"command_id":"a","memory":{"content":"x"}}{}',
        b'{"schema_version":1,"command_id":"a","memory":{"content":"\\u0000"}}',
        '{"schema_version":1,"command_id":"a","memory":{"content":"x"}}'.encode("utf-16"),
    ],
)
def test_unusual_json_is_read_as_the_models_read_it(raw: bytes) -> None:
    check("remember", raw)


# -- the fast path is really taken ----------------------------------------------


def test_a_usual_remember_takes_the_fast_path() -> None:
    vector = np.linspace(-1, 1, 384, dtype=np.float32)
    doc = {
        "schema_version": 1,
        "command_id": "cmd-1",
        "memory": {
            "id": "m1",
            "content": "memory 1: harbor cloud",
            "embedding_b64": encode_embedding(vector),
            "confidence": 0.9,
            "tags": ["a", "b"],
            "metadata": {"source": "chat"},
            "occurred_at": "2025-03-01T12:00:00.250000+00:00",
        },
    }
    fast = check("remember", json.dumps(doc).encode())
    assert isinstance(fast, Remember)
    assert fast.vector is not None and np.array_equal(fast.vector, vector)
    doc["memory"] = {"content": "text only, embedded by the worker"}
    assert isinstance(check("remember", json.dumps(doc).encode()), Remember)
    doc["memory"] = {"content": "list", "embedding": [0.5, -1, 2.0]}
    assert isinstance(check("remember", json.dumps(doc).encode()), Remember)


def test_a_usual_forget_takes_the_fast_path() -> None:
    doc = {"schema_version": 1, "command_id": "c", "memory_id": "m1"}
    assert check("forget", json.dumps(doc).encode()) == Forget(command_id="c", memory_id="m1")


def test_decode_names_the_reason_when_neither_path_accepts() -> None:
    with pytest.raises(CommandRejected, match=r"memory\.id"):
        decode(
            "remember", b'{"schema_version":1,"command_id":"c","memory":{"content":"x","id":"-"}}'
        )
    with pytest.raises(CommandRejected, match="unknown command 'recall'"):
        decode("recall", b"{}")


# -- positions ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.SPACE_alpha.dur.1.42.7.1700000000123456789.5",
        "$JS.ACK._.ACCHASH.SPACE_alpha.dur.1.42.7.1700000000123456789.5.tok",
        "$JS.ACK.hub.ACCHASH.SPACE_alpha.dur.1.42.7.1700000000123456789.5",
    ],
)
def test_position_reads_what_nats_py_metadata_reads(reply: str) -> None:
    from nats.aio.msg import Msg

    meta = Msg.Metadata._from_reply(reply)
    seq, stamp, pending = position(reply)
    assert seq == meta.sequence.stream == 42
    assert pending == meta.num_pending == 5
    assert stored_at(stamp) == meta.timestamp


@pytest.mark.parametrize("reply", [None, "", "inbox.1", "$JS.ACK.a.b.c", "$JS.NAK.a.b.1.2.3.4.5"])
def test_position_refuses_what_is_not_a_jetstream_reply(reply: str | None) -> None:
    from nats.errors import NotJSMessageError

    with pytest.raises(NotJSMessageError):
        position(reply)
