"""Builders for unit tests of the space fold: spaces, states and raw WAL bodies.

The fold is fed exactly what the WAL consumer hands it (verb, raw bytes, stream
sequence, timestamp), so these helpers produce bytes, not models.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from engram_contract.embedders import HashNgramEmbedder
from engram_contract.messages import LinkSettings, SpaceRecord
from engram_worker.core.records import StoredMemory
from engram_worker.core.state import SpaceState

SPACE = "alpha"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def make_state(dim: int = 16, **links: Any) -> SpaceState:
    """A fresh, empty state of space ``alpha`` with the built-in embedder (and the
    given link settings)."""
    record = SpaceRecord(
        id=SPACE,
        dim=dim,
        embedder=HashNgramEmbedder.name,
        created_at=EPOCH,
        links=LinkSettings(**links),
    )
    return SpaceState(record, HashNgramEmbedder(dim))


def ts(seq: int) -> datetime:
    """The broker timestamp of stream message ``seq`` (one second apart)."""
    return EPOCH + timedelta(seconds=seq)


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def remember(
    content: str = "a memory",
    *,
    memory_id: str | None = None,
    command_id: str = "cmd",
    embedding: Sequence[float] | np.ndarray | None = None,
    **memory_fields: Any,
) -> bytes:
    """A ``remember`` WAL body as a publisher would send it."""
    memory: dict[str, Any] = {"content": content, **memory_fields}
    if memory_id is not None:
        memory["id"] = memory_id
    if embedding is not None:
        memory["embedding"] = [float(x) for x in embedding]
    return body({"schema_version": 1, "command_id": command_id, "memory": memory})


def basis(dim: int, i: int, sign: float = 1.0) -> np.ndarray:
    """The unit vector along axis ``i``."""
    vec = np.zeros(dim, dtype=np.float32)
    vec[i] = sign
    return vec


def everything(state: SpaceState) -> list[StoredMemory]:
    """Every live record in stream order."""
    recs, cursor = state.page(0, 10**6)
    assert cursor is None
    return recs


def live_ids(state: SpaceState) -> list[str]:
    return [rec.id for rec in everything(state)]
