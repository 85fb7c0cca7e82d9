"""The access matrix over NATS, on a real nats-server with Engram's auth
callout: every subject an agent could use for a space (commands, queries,
events, the space's registry record, an event consumer) × every role (read,
write, admin) × the key's own space, another existing space, a missing
space. The server's permission checks decide; the expected answer is the
table in docs/security.md. And zero accesses across spaces: the other
space's WAL does not change."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from engram_contract.subjects import REGISTRY_BUCKET, stream_name
from engram_nats.streams import EVENTS_STREAM, ensure_events_stream
from tests.integration.test_auth_nats import Agent, Stack, callout_nats, stack

__all__ = ["callout_nats", "stack"]  # the fixtures, shared with test_auth_nats

WRITE_COMMANDS = ("remember", "forget", "link")
WORKER_COMMANDS = ("reinforce", "consolidate")  # the workers' own: no key publishes them
READ_QUERIES = ("recall", "get", "list", "stats", "export")


def _publishes(space: str) -> dict[str, str]:
    """name → subject an agent publishes to (requests are publishes too)."""
    subjects = {f"cmd.{v}": f"spaces.{space}.{v}" for v in WRITE_COMMANDS + WORKER_COMMANDS}
    subjects |= {f"q.{q}": f"spaces.{space}.q.{q}" for q in (*READ_QUERIES, "consolidate")}
    subjects["record"] = f"$JS.API.DIRECT.GET.KV_{REGISTRY_BUCKET}.$KV.{REGISTRY_BUCKET}.{space}"
    subjects["consumer"] = f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.m{uuid.uuid4().hex[:6]}" + (
        f".spaces.{space}.evt.>"
    )
    return subjects


def _allowed(role: str, name: str, target: str) -> bool:
    if role == "admin":
        return True
    if target != "own":
        return False
    if name.startswith("cmd."):
        return role == "write" and name[4:] in WRITE_COMMANDS
    if name == "q.consolidate":
        return role == "write"
    return True  # read queries, the own record, a consumer on the own events


async def _refused(agent: Agent, kind: str, subject: str) -> bool:
    wanted = f'permissions violation for {kind} to "{subject}"'.lower()
    return any(wanted in e.lower() for e in agent.errors)


async def test_every_subject_for_every_role_on_own_other_and_missing_spaces(
    stack: Stack,
) -> None:
    await ensure_events_stream(stack.nc.jetstream(), max_age=600)
    other = await stack.space("other")
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    own = {role: await stack.space(f"own-{role}") for role in ("read", "write")}
    keys = {role: await stack.key(role, own[role]) for role in ("read", "write")}
    keys["admin"] = await stack.key("admin")
    wal = stack.nc.jetstream()
    before = (await wal.stream_info(stream_name(other))).state.messages

    failures: list[str] = []
    for role in ("read", "write", "admin"):  # the admin last: it may write to the other
        if role == "admin":
            after = (await wal.stream_info(stream_name(other))).state.messages
            assert after == before, "a scoped key changed another space's WAL"
        agent = await stack.agent(keys[role])
        targets = {"own": own.get(role, own["write"]), "other": other, "missing": missing}
        cases = []
        for target, space in targets.items():
            for name, subject in _publishes(space).items():
                await agent.nc.publish(subject, b"{}")
                cases.append(("publish", name, target, subject))
            events = f"spaces.{space}.evt.>"
            await agent.nc.subscribe(events)
            cases.append(("subscription", "events", target, events))
        await agent.nc.flush()
        # every refusal comes back asynchronously: wait until the expected count
        expected_refusals = sum(not _allowed(role, n, t) for _, n, t, _ in cases)
        for _ in range(100):
            if len(agent.errors) >= expected_refusals:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # and a moment for any refusal that should not come
        for kind, name, target, subject in cases:
            refused = await _refused(agent, kind, subject)
            if refused == _allowed(role, name, target):
                want = "allowed" if _allowed(role, name, target) else "refused"
                failures.append(f"{role} {kind} {name} on {target} ({subject}): want {want}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ["read", "write"])
async def test_a_scoped_key_cannot_reach_the_control_and_key_subjects(
    stack: Stack, role: str
) -> None:
    key = await stack.key(role, await stack.space("ctl"))
    agent = await stack.agent(key)
    for subject in ("engram.ctl.status", "$KV.ENGRAM_KEYS.x", "$JS.API.STREAM.LIST"):
        await agent.denied_publish(subject)
