"""A space's quota (``max_memories``, ``max_bytes`` in its record), checked before
remembers are published, so a client gets one clear refusal naming the limit and
the usage instead of a batch cut short.

Both checks are made here, on what the writer can see: the space's live memory
count (its worker's ``stats``, after this client's own writes) and its WAL's
bytes (the stream's info). The fold is the authority on ``max_memories`` (it
refuses, as ``rejected``, a remember of a new memory past it, whoever published
it); JetStream on bytes (the WAL stream's own limit, a little above
``max_bytes``: :func:`engram_nats.streams.wal_byte_limit`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from engram_contract.errors import LimitReached
from engram_contract.messages import SpaceRecord, StatsRequest
from engram_contract.subjects import CommandVerb, command_subject, stream_name

if TYPE_CHECKING:
    from engram_nats.service import MemoryService

#: what JetStream stores around a message's body: its subject, headers and framing
MESSAGE_OVERHEAD = 96


async def check(
    service: MemoryService, rec: SpaceRecord, remembers: Sequence[tuple[CommandVerb, str, bytes]]
) -> None:
    """Raise :class:`LimitReached` (409) when ``remembers`` would take ``rec``'s space
    past a quota. Near ``max_memories`` every remember counts as a new memory
    (whether its id exists is the worker's to know; the fold then refuses only
    those that are)."""
    space = rec.id
    if rec.max_memories:
        answer = json.loads(
            await service.query(space, "stats", StatsRequest(min_seq=service.acked.get(space)))
        )
        held = int(answer.get("memories", 0))
        if held + len(remembers) > rec.max_memories:
            raise quota_reached(
                space,
                "max_memories",
                rec.max_memories,
                f"it holds {held:,} memories and this write adds up to {len(remembers):,}",
            )
    if rec.max_bytes:
        info = await service.js.stream_info(stream_name(space))
        used = int(info.state.bytes)
        adding = sum(
            len(body) + len(cid) + len(command_subject(space, verb)) + MESSAGE_OVERHEAD
            for verb, cid, body in remembers
        )
        if used + adding > rec.max_bytes:
            raise quota_reached(
                space,
                "max_bytes",
                rec.max_bytes,
                f"its WAL holds {used:,} bytes and this write adds about {adding:,}",
            )


def quota_reached(space: str, limit: str, value: int, usage: str) -> LimitReached:
    return LimitReached(
        409,
        "Space quota reached",
        f"memory space {space!r} is at its {limit} of {value:,}: {usage}",
        hint="Forget memories you no longer need, or ask an admin for a space with a "
        "higher limit (max_memories / max_bytes are set when a space is created).",
        slug="space-quota-reached",
    )
