"""Turning memories a client sent into ``remember`` commands: what the gateway
does for HTTP clients and the SDK does over NATS, in one place."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engram_contract.ids import derived_id, new_id
from engram_contract.messages import (
    MemoryIn,
    RememberCommand,
    SpaceRecord,
    encode_embedding,
    vector_problem,
)


class FieldInvalid(ValueError):
    """A memory's field fails a check only the space can make (its dim)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def to_embed(memories: Sequence[MemoryIn]) -> list[int]:
    """The positions of the memories with text only: the space's embedder makes
    their vectors."""
    return [i for i, m in enumerate(memories) if m.embedding is None and m.embedding_b64 is None]


def remember_commands(
    space: str,
    rec: SpaceRecord,
    memories: Sequence[MemoryIn],
    embedded: dict[int, np.ndarray],
    *,
    prefix: str = "",
    idempotency_key: str | None = None,
) -> list[RememberCommand]:
    """One command per memory: its id (the client's, else new, else derived from
    the idempotency key and its position, so a retry names the same memories),
    a command id, and its vector in WAL form (``embedded[i]`` for the positions
    :func:`to_embed` named). Raises :class:`FieldInvalid` naming the first
    vector that does not fit the space (``memories[3].embedding``)."""
    commands = []
    for i, mem in enumerate(memories):
        vec = embedded.get(i)
        if vec is None:
            vec = mem.vector()
            assert vec is not None, "a memory without a vector must be in `embedded`"
            problem = vector_problem(vec, rec.dim, rec.metric)
            if problem is not None:
                field = f"{prefix}[{i}].embedding" if prefix else "embedding"
                if mem.embedding_b64 is not None:
                    field += "_b64"
                raise FieldInvalid(field, f"{problem} (space {space!r})")
        if idempotency_key is None:
            command_id, memory_id = new_id(), mem.id or new_id()
        else:
            command_id = f"{idempotency_key}:{i}"
            memory_id = mem.id or derived_id(space, idempotency_key, str(i))
        # model_construct: every part is validated already (the memory by MemoryIn)
        memory = mem.model_copy(
            update={"id": memory_id, "embedding": None, "embedding_b64": encode_embedding(vec)}
        )
        commands.append(RememberCommand.model_construct(command_id=command_id, memory=memory))
    return commands
