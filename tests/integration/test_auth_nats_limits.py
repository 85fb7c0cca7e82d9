"""What one API key may hold on NATS (the auth callout's per-key limits): so
many connections, and on the shared events stream only short-lived consumers
delivering to its own inbox, so many of them. A key past a limit is refused
or loses the extra; other keys are not affected. Same callout-configured
nats-server as test_auth_nats."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from nats.js import api

from engram_client import EngramClient
from engram_nats.authcallout import inbox_prefix
from engram_nats.streams import EVENTS_STREAM, ensure_events_stream
from tests.integration.test_auth_nats import (
    MAX_CONNECTIONS,
    MAX_CONSUMERS,
    Stack,
    callout_nats,
    stack,
)

__all__ = ["callout_nats", "stack"]  # the fixtures, shared with test_auth_nats


async def _consumers(stack: Stack) -> set[str]:
    return {c.name for c in await stack.nc.jetstream().consumers_info(EVENTS_STREAM)}


async def test_a_key_keeps_only_short_lived_event_consumers_on_its_inbox_and_so_many(
    stack: Stack,
) -> None:
    await ensure_events_stream(stack.nc.jetstream(), max_age=600)
    space = await stack.space("cons")
    key = await stack.key("read", space)
    js = (await stack.agent(key)).nc.jetstream()
    inbox = inbox_prefix(key)

    async def create(name: str, **config: object) -> None:
        await js.add_consumer(
            EVENTS_STREAM,
            api.ConsumerConfig(
                name=name,
                filter_subject=f"spaces.{space}.evt.>",
                ack_policy=api.AckPolicy.NONE,
                **config,  # type: ignore[arg-type]
            ),
        )

    # each of these the server accepts (its permissions allow the create call)
    await create("durable", durable_name="durable", deliver_subject=f"{inbox}.d")
    await create("pull", inactive_threshold=30.0)
    await create("lingering", deliver_subject=f"{inbox}.f", inactive_threshold=3600.0)
    await create("elsewhere", deliver_subject="_INBOX.someone-else", inactive_threshold=30.0)
    ok = [f"ok{i}" for i in range(MAX_CONSUMERS + 1)]
    for name in ok:  # the SDK's shape: push to its own inbox, idle-deleted
        await create(name, deliver_subject=f"{inbox}.{name}", inactive_threshold=30.0)
    bad = {"durable", "pull", "lingering", "elsewhere", ok[-1]}
    for _ in range(100):
        if not bad & await _consumers(stack):
            break
        await asyncio.sleep(0.05)
    left = await _consumers(stack)
    assert not bad & left, f"not deleted: {bad & left}"
    assert set(ok[:-1]) <= left  # within the limit, the right shape: kept
    assert stack.callout.limits is not None and stack.callout.limits.consumers_deleted >= 5

    # another key's reader is not affected by this key's count
    other_key = await stack.key("write", space)
    async with EngramClient.nats(stack.server.url, api_key=other_key, timeout=5) as c:
        s = c.space(space)
        async with s.events(types=["stored"]) as events:
            await s.remember("still heard", id="m1")
            got = await asyncio.wait_for(events.__anext__(), 10)
        assert got.kind == "stored"


async def test_a_key_may_hold_only_so_many_connections(stack: Stack) -> None:
    space = await stack.space("conns")
    key, other = await stack.key("read", space), await stack.key("read", space)
    agents = [await stack.agent(key) for _ in range(MAX_CONNECTIONS)]
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
        await stack.agent(key)
    await stack.agent(other)  # another key is not counted with it
    # one closed: room for one more (once the server's disconnect event is in)
    await agents[0].nc.close()
    for _ in range(100):
        try:
            await stack.agent(key)
            break
        except nats.errors.Error:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("no connection after one of the key's closed")
