"""Short-lived JetStream readers, and erasing single messages."""

from __future__ import annotations

import contextlib
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError


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


_NO_MESSAGE_FOUND = 10057  # JSNoMessageFoundErr
# JSSequenceNotFoundErr: what a delete answers when another client erased the
# message a moment before (a worker and a gateway both erasing a deleted space's
# snapshot, seen in CI)
_SEQUENCE_NOT_FOUND = 10043


async def delete_msg(js: JetStreamContext, stream: str, seq: int) -> bool:
    """Erase one message (JetStream overwrites its bytes); ``False`` when it was
    already gone (erased by someone else, or never there)."""
    try:
        await js.delete_msg(stream, seq)
    except NotFoundError:
        return False
    except APIError as exc:
        if exc.err_code in (_NO_MESSAGE_FOUND, _SEQUENCE_NOT_FOUND):
            return False
        raise
    return True
