"""The query requests on the hot path: msgspec mirrors of the pydantic models in
:mod:`.queries`, which stay the contract (they make the OpenAPI and AsyncAPI
documents and name the errors).

:func:`parse_query` decodes with the mirror (one pass over the bytes, no
intermediate dict). Whatever the mirror refuses goes to the pydantic model,
which either raises its ``ValidationError`` (so an error names the same fields
with the same messages as ever, ``tags[2]: …``) or accepts a form the mirror is
stricter about (``"k": "5"``), converted. The mirror never accepts what the
model refuses (tests/unit/test_query_structs.py holds the two side by side).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
import numpy as np
from msgspec import Meta
from pydantic import BaseModel

from engram_contract.ids import SPACE_ID_PATTERN
from engram_contract.messages.base import (
    MAX_CONTENT_BYTES,
    MAX_TAG_CHARS,
    MAX_TAGS,
    Consistency,
    RecallMode,
    as_utc,
    check_embedding_b64,
    decode_embedding,
)
from engram_contract.messages.queries import GetRequest, ListRequest, RecallRequest, StatsRequest

MinSeq = Annotated[int, Meta(ge=0)] | None
SpaceIdOrNone = Annotated[str, Meta(pattern=SPACE_ID_PATTERN)] | None
TagStr = Annotated[str, Meta(min_length=1, max_length=MAX_TAG_CHARS)]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]


class QueryStruct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of the mirrors: unknown fields refused, defaults left out when encoded."""

    def check(self) -> None:
        """What the model's validators check across fields (``ValueError``)."""


class RecallWire(QueryStruct, frozen=True):
    """:class:`~engram_contract.messages.queries.RecallRequest` on the hot path."""

    query: Annotated[str, Meta(min_length=1, max_length=MAX_CONTENT_BYTES)] | None = None
    embedding: list[float] | None = None
    embedding_b64: str | None = None
    k: Annotated[int, Meta(ge=1, le=1000)] = 10
    mode: RecallMode = "spreading"
    seed_k: Annotated[int, Meta(ge=1, le=1000)] = 10
    max_hops: Annotated[int, Meta(ge=0, le=4)] = 2
    hop_decay: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.5
    threshold: Unit = 0.05
    max_fanout: Annotated[int, Meta(ge=1, le=64)] = 8
    hybrid_weight: Unit = 0.5
    tags: Annotated[list[TagStr], Meta(max_length=MAX_TAGS)] = msgspec.field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None
    trace: bool = False
    reinforce: bool = True
    consistency: Consistency = "read_your_writes"
    min_seq: MinSeq = None
    memory_space_id: SpaceIdOrNone = None

    def check(self) -> None:
        self.checked()

    def checked(self) -> np.ndarray | None:
        """The model's cross-field rules (``ValueError``), and the vector cue
        (float32; ``None``: the cue is text), made once."""
        if self.embedding is not None and self.embedding_b64 is not None:
            raise ValueError("both embeddings")
        if (self.query is None) == (self.embedding is None and self.embedding_b64 is None):
            raise ValueError("not one cue")
        if (
            self.since is not None
            and self.until is not None
            and as_utc(self.since) >= as_utc(self.until)
        ):
            raise ValueError("since after until")
        if self.embedding is not None:
            with np.errstate(over="ignore"):
                vec = np.asarray(self.embedding, dtype=np.float32)
            if not np.isfinite(vec).all():
                raise ValueError("beyond float32")
            return vec
        if self.embedding_b64 is not None:
            return check_embedding_b64(self.embedding_b64)
        return None

    def vector(self) -> np.ndarray | None:
        """The vector cue as float32 (``None``: the cue is text)."""
        if self.embedding is not None:
            return np.asarray(self.embedding, dtype=np.float32)
        if self.embedding_b64 is not None:
            return decode_embedding(self.embedding_b64)
        return None

    @property
    def cue_dim(self) -> int | None:
        """How many values the vector cue holds (``None``: a text cue); of a
        request that was checked (valid base64, counted without decoding)."""
        if self.embedding is not None:
            return len(self.embedding)
        b64 = self.embedding_b64
        if b64 is not None:
            pad = 2 if b64.endswith("==") else 1 if b64.endswith("=") else 0
            return (len(b64) * 3 // 4 - pad) // 4
        return None


class GetWire(QueryStruct, frozen=True):
    memory_id: str
    include_embedding: bool = False
    min_seq: MinSeq = None
    memory_space_id: SpaceIdOrNone = None


class ListWire(QueryStruct, frozen=True):
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    cursor: str | None = None
    include_embedding: bool = False
    min_seq: MinSeq = None
    memory_space_id: SpaceIdOrNone = None


class StatsWire(QueryStruct, frozen=True):
    min_seq: MinSeq = None
    memory_space_id: SpaceIdOrNone = None


#: each mirror's model (the contract, and the source of every error message)
MODEL_OF: dict[type[QueryStruct], type[BaseModel]] = {
    RecallWire: RecallRequest,
    GetWire: GetRequest,
    ListWire: ListRequest,
    StatsWire: StatsRequest,
}
_DECODERS: dict[type[QueryStruct], msgspec.json.Decoder[Any]] = {
    s: msgspec.json.Decoder(s) for s in MODEL_OF
}
_ENCODER = msgspec.json.Encoder()
S = TypeVar("S", bound=QueryStruct)


def parse_query(struct: type[S], data: bytes) -> S:
    """The request in ``data``. Raises the model's ``pydantic.ValidationError``
    when the model refuses it (malformed JSON included)."""
    try:
        req: S = _DECODERS[struct].decode(data)
        req.check()
        return req
    except (msgspec.DecodeError, ValueError):
        pass  # msgspec.ValidationError is a DecodeError
    accepted = MODEL_OF[struct].model_validate_json(data)
    return msgspec.convert(accepted.model_dump(), struct)


def parse_recall(data: bytes) -> tuple[RecallWire, np.ndarray | None]:
    """A recall request and its vector cue (``None``: text), decoded once; errors
    as :func:`parse_query`."""
    try:
        req = _DECODERS[RecallWire].decode(data)
        return req, req.checked()
    except (msgspec.DecodeError, ValueError):
        pass
    req = parse_query(RecallWire, data)
    return req, req.vector()


def encode_query(req: QueryStruct) -> bytes:
    """A request as it goes on the wire (defaults left out)."""
    return _ENCODER.encode(req)


def with_min_seq(req: S, body: bytes, min_seq: int) -> tuple[S, bytes]:
    """``req`` (decoded from ``body``) waiting for ``min_seq``, and its bytes: the
    body with one member appended when it has no ``min_seq`` of its own (the
    vector is not encoded again), else encoded anew."""
    updated = msgspec.structs.replace(req, min_seq=min_seq)
    end = body.rstrip()
    if b'"min_seq"' not in body and end.endswith(b"}") and end[:-1].rstrip()[-1:] not in b"{":
        return updated, end[:-1] + b',"min_seq":%d}' % min_seq
    return updated, encode_query(updated)
