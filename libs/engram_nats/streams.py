"""The JetStream streams Engram creates: a WAL per space, and the events stream."""

from __future__ import annotations

import contextlib

import nats.js.errors
from nats.js import JetStreamContext, api

from engram_contract.subjects import stream_name, wal_subjects

#: Duplicate window of a space's WAL: retries with the same command id inside it
#: are dropped by JetStream (outside it the fold's upsert makes them harmless).
DUPLICATE_WINDOW_S = 120.0


def wal_byte_limit(max_bytes: int) -> int:
    """The WAL stream's own byte limit for a space's ``max_bytes``: a little above
    it, so that a full space can still be forgotten from (a forget is a write too,
    and its erasure is what frees the WAL's bytes); remembers stop at ``max_bytes``
    (the gateway and the SDK check it), anything at this limit (JetStream does)."""
    return max_bytes + max(1 << 20, max_bytes // 20) if max_bytes else 0


def space_stream_config(space: str, replicas: int = 1, max_bytes: int = 0) -> api.StreamConfig:
    """A space's WAL. With ``max_bytes`` (the space's) JetStream refuses a write past
    :func:`wal_byte_limit` of it (discard *new*: the WAL never drops what it
    acknowledged)."""
    return api.StreamConfig(
        name=stream_name(space),
        description=f"Engram WAL of memory space {space}",
        subjects=[wal_subjects(space)],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.NEW if max_bytes else api.DiscardPolicy.OLD,
        max_bytes=wal_byte_limit(max_bytes) or None,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas,
        allow_direct=True,
    )


#: The stream that keeps every space's events (``spaces.S.evt.<kind>``) for a while,
#: so server-sent-event clients can resume where they left off.
EVENTS_STREAM = "ENGRAM_EVENTS"
EVENTS_SUBJECTS = "spaces.*.evt.>"


def events_stream_config(
    max_age: float, replicas: int = 1, max_consumers: int = 10_000
) -> api.StreamConfig:
    return api.StreamConfig(
        name=EVENTS_STREAM,
        description="Engram events of every memory space, kept for max_age",
        subjects=[EVENTS_SUBJECTS],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        max_age=max_age,
        num_replicas=replicas,
        # one consumer per SSE client; left unset, nats-server caps a stream at
        # 1000 consumers (measured with 2.15)
        max_consumers=max_consumers,
    )


async def ensure_events_stream(
    js: JetStreamContext, *, max_age: float, replicas: int = 1, max_consumers: int = 10_000
) -> None:
    """Create the events stream, or bring an existing one to this ``max_age``.

    Idempotent and safe for several processes at once. Workers publish events
    with core NATS, so the stream captures them as they are published.
    """
    config = events_stream_config(max_age, replicas, max_consumers)
    try:
        await js.add_stream(config=config)
    except nats.js.errors.BadRequestError:
        # it exists with another config (another max_age, say): update it; the
        # replica count of an existing stream is left as it is
        info = await js.stream_info(EVENTS_STREAM)
        config.num_replicas = info.config.num_replicas
        await js.update_stream(config=config)


async def purge_events(js: JetStreamContext, space: str) -> None:
    """Drop a deleted space's events from the events stream (none if it has none)."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.purge_stream(EVENTS_STREAM, subject=f"spaces.{space}.evt.>")
