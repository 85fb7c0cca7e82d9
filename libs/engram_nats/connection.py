"""Connecting to NATS, and requests every worker answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

log = logging.getLogger(__name__)
T = TypeVar("T")


async def connect(url: str, name: str, attempts: int = -1) -> Client:
    """Connect with unlimited reconnects (the broker may restart under us), or
    ``attempts`` of them (a command-line tool should fail, not hang)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    return await nats.connect(
        url.split(","),
        name=name,
        max_reconnect_attempts=attempts,
        reconnect_time_wait=0.5,
        error_cb=on_error,
    )


#: waits between tries of a JetStream call that timed out while a cluster settles
SETTLE_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


async def settled(call: Callable[[], Awaitable[T]], what: str) -> T:
    """``call()``, tried again while it times out: a JetStream cluster that has just
    formed, or a stream just created in one, may not answer until it has a leader
    (seconds on a busy machine)."""
    for delay in SETTLE_BACKOFF:
        try:
            return await call()
        except nats.errors.TimeoutError:
            log.info("nats: %s timed out (a cluster settling?); trying again", what)
            await asyncio.sleep(delay)
    return await call()


async def gather(
    nc: Client, subject: str, payload: bytes, *, wait: float, quiet: float = 0.25
) -> list[bytes]:
    """Publish a request every worker answers and collect the answers: wait up to
    ``wait`` seconds for the first, then stop once ``quiet`` seconds pass without
    another. An empty "no responders" status reply is left out."""
    inbox = nc.new_inbox()
    answers: list[bytes] = []
    got = asyncio.Event()

    async def on_reply(msg: Msg) -> None:
        if msg.data or not msg.headers:  # a no-responders status has headers, no data
            answers.append(msg.data)
        got.set()

    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        await nc.publish(subject, payload, reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        seen = -1
        while (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(got.wait(), min(quiet, left) if seen >= 0 else left)
            except TimeoutError:
                if seen >= 0:
                    break
            got.clear()
            seen = len(answers)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return answers
