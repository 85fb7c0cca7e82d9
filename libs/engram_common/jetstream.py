"""Small JetStream helpers shared by the services."""

from __future__ import annotations

import contextlib
from typing import Any

from nats.js import JetStreamContext


async def close_consumer(js: JetStreamContext, stream: str, sub: Any) -> None:
    """Unsubscribe an ephemeral push subscription and delete its consumer.

    Unsubscribing only removes interest: the server keeps the consumer until its
    inactive threshold (5 s by default), and a stream holds at most 1000
    consumers unless configured otherwise, so short-lived readers (a snapshot
    read per space at start-up) must not leave theirs behind. An ordered
    consumer is re-created under a new name after a gap; ``_consumer`` is the
    current one."""
    consumer = getattr(sub, "_consumer", None)
    with contextlib.suppress(Exception):
        await sub.unsubscribe()
    if consumer:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, consumer)
