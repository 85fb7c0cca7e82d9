"""Shared by every message: the base model, limits and field types, embeddings on the wire."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from engram_contract.ids import MEMORY_ID_PATTERN, SPACE_ID_PATTERN

SCHEMA_VERSION: Literal[1] = 1

MAX_CONTENT_BYTES = 100 * 1024
MAX_BATCH = 1000
MAX_TAGS = 64
MAX_METADATA = 64
DEFAULT_CONFIDENCE = 0.7

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MemoryId = Annotated[str, StringConstraints(pattern=MEMORY_ID_PATTERN)]
SpaceId = Annotated[str, StringConstraints(pattern=SPACE_ID_PATTERN)]
MAX_COMMAND_ID_CHARS = 200
MAX_TAG_CHARS = 128
MAX_META_KEY_CHARS = 128
MAX_META_VALUE_CHARS = 4096
CommandId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_COMMAND_ID_CHARS)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_CHARS)]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_META_KEY_CHARS)]
MetaValue = Annotated[str, StringConstraints(max_length=MAX_META_VALUE_CHARS)]
Consistency = Literal["read_your_writes", "strong", "eventual"]
MemoryKind = Literal["episodic", "semantic"]
RecallMode = Literal["similarity", "spreading", "hybrid"]
MAX_CONSOLIDATE_MEMBERS = 256
#: what ``memory_space_id`` means in every command and query request
TARGET_SPACE_DOC = (
    "The space this message is meant for. Optional: null takes it from the subject "
    "(spaces.<id>.…); when given it must name the subject's space, else the message is "
    "rejected (a command) or answered with an error (a query)."
)
Metric = Literal["cos", "ip", "l2sq"]


class Model(BaseModel):
    """Base of every message: immutable, unknown fields rejected (typos get named)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------
# embeddings


def encode_embedding(vector: np.ndarray | list[float]) -> str:
    """Base64 of the vector as little-endian float32 (the WAL form)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_embedding(b64: str) -> np.ndarray:
    """Inverse of :func:`encode_embedding`; raises ``ValueError`` on bad input."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"embedding_b64 is not valid base64: {exc}") from None
    if len(raw) % 4:
        raise ValueError("embedding_b64 must hold whole float32 values (length % 4 != 0)")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def check_embedding_b64(b64: str) -> np.ndarray:
    """The vector of an ``embedding_b64`` (remember and recall share these rules);
    raises ``ValueError`` when it is not base64 of whole, finite float32 values."""
    vec = decode_embedding(b64)
    if not np.isfinite(vec).all():
        raise ValueError("embedding_b64 holds NaN or infinite values")
    return vec


def _check_float32(values: list[float] | None) -> None:
    """Vectors are stored as float32: finite doubles beyond its range would become inf."""
    if values is None:
        return
    with np.errstate(over="ignore"):
        as_f32 = np.asarray(values, dtype=np.float32)
    if not np.isfinite(as_f32).all():
        raise ValueError("embedding holds values beyond float32 range (|x| > 3.4e38)")


def vector_problem(vector: np.ndarray, dim: int, metric: str) -> str | None:
    """Why ``vector`` cannot be stored in a space of ``dim``/``metric``, or ``None``."""
    if vector.shape != (dim,):
        return f"expected {dim} values (the space's dim), got {vector.shape[0]}"
    if metric == "cos" and not np.any(vector):
        return "all zeros: a zero vector has no direction for cosine similarity"
    return None


def as_utc(when: datetime) -> datetime:
    """A datetime without a zone is taken as UTC (as the fold does)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


LinkKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
