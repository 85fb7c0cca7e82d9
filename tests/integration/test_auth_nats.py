"""Agents on NATS with their API key (the connection token), on a real nats-server
configured with Engram's auth callout: each key gets its spaces and nothing else;
no key, a wrong or revoked key gets no connection; a revoked key's open
connection is cut; while the callout is down new connections are refused and
open ones keep working."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client

from engram_cli.devstack import free_port, start_nats_server
from engram_client import EngramClient
from engram_client.errors import Forbidden, Unauthorized
from engram_contract.keys import Role
from engram_contract.subjects import stream_name
from engram_nats.authcallout import AuthCallout, inbox_prefix
from engram_nats.callout_setup import SERVICE_USER, SYSTEM_USER, CalloutSecrets, with_user
from engram_nats.connection import connect
from engram_nats.keylimits import KeyLimits
from engram_nats.keys import KeyStore
from engram_nats.streams import ensure_events_stream
from engram_worker.worker import Worker
from tests.helpers import purge_heartbeats, query_over_nats, random_unit, worker_settings

DIM = 16
#: per-key limits of the test callout (small, so the limits tests reach them)
MAX_CONNECTIONS, MAX_CONSUMERS = 5, 3


@dataclass
class CalloutNats:
    """A nats-server whose agents are decided by the auth callout."""

    url: str
    secrets: CalloutSecrets
    proc: Any

    @property
    def service_url(self) -> str:
        return with_user(self.url, SERVICE_USER, self.secrets.service_password)

    @property
    def system_url(self) -> str:
        return with_user(self.url, SYSTEM_USER, self.secrets.system_password)


@pytest.fixture(scope="module")
def callout_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalloutNats]:
    root = tmp_path_factory.mktemp("nats-callout")
    secrets = CalloutSecrets.generate()
    # a short auth timeout: a connection nobody answers for is refused within 1 s
    config = secrets.write_config(root / "nats-auth.conf", auth_timeout=1)
    port = free_port()
    proc = start_nats_server(root / "store", port, log_file=root / "nats.log", config=config)
    yield CalloutNats(f"nats://127.0.0.1:{port}", secrets, proc)
    proc.terminate()
    proc.wait(15)


@dataclass
class Stack:
    """The callout (in process), a worker and a service connection for the test."""

    server: CalloutNats
    nc: Client
    keys: KeyStore
    callout: AuthCallout
    system: Client
    opened: list[Client] = field(default_factory=list)

    async def key(self, role: Role, *spaces: str) -> str:
        _, key = await self.keys.create(role, list(spaces))
        return key

    async def space(self, prefix: str) -> str:
        space = f"{prefix}-{uuid.uuid4().hex[:10]}"
        async with EngramClient.nats(self.server.service_url) as c:
            await c.create_space(space, dim=DIM)
        return space

    async def agent(self, key: str | None, **options: Any) -> Agent:
        agent = Agent()
        auth: dict[str, Any] = {}
        if key is not None:
            auth = {"token": key, "inbox_prefix": inbox_prefix(key)}
        nc = await nats.connect(
            self.server.url,
            error_cb=agent.on_error,
            disconnected_cb=agent.on_disconnect,
            allow_reconnect=options.pop("allow_reconnect", False),
            reconnect_time_wait=0.1,
            **auth,
            **options,
        )
        agent.nc = nc
        self.opened.append(nc)
        return agent


class Agent:
    def __init__(self) -> None:
        self.nc: Client = None  # type: ignore[assignment]
        self.errors: list[str] = []
        self.disconnects = 0

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc))

    async def on_disconnect(self) -> None:
        self.disconnects += 1

    async def violation(self, what: str, subject: str) -> None:
        """Wait for the server's permissions violation for ``subject``."""
        wanted = f'permissions violation for {what} to "{subject}"'
        for _ in range(100):
            if any(wanted.lower() in e.lower() for e in self.errors):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {wanted!r} in {self.errors}")

    async def denied_publish(self, subject: str, body: bytes = b"{}") -> None:
        await self.nc.publish(subject, body)
        await self.nc.flush()
        await self.violation("publish", subject)

    async def denied_request(self, subject: str, body: bytes = b"{}") -> None:
        with pytest.raises(nats.errors.TimeoutError):
            await self.nc.request(subject, body, timeout=0.5)
        await self.violation("publish", subject)

    async def denied_subscribe(self, subject: str) -> None:
        await self.nc.subscribe(subject)
        await self.nc.flush()
        await self.violation("subscription", subject)


@pytest.fixture
async def stack(callout_nats: CalloutNats, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    # connected as `engram auth-callout` is: the service user from the environment,
    # the system user from its URL
    for name, value in callout_nats.secrets.service_env().items():
        monkeypatch.setenv(name, value)
    nc = await connect(callout_nats.url, "engram-auth-callout")
    system = await connect(callout_nats.system_url, "engram-auth-callout-sys")
    keys = KeyStore(nc.jetstream())
    await keys.start()
    limits = KeyLimits(nc, system, max_connections=MAX_CONNECTIONS, max_consumers=MAX_CONSUMERS)
    callout = AuthCallout(nc, keys, callout_nats.secrets.issuer_seed, system, limits=limits)
    await callout.start()
    worker = Worker(worker_settings(callout_nats.service_url, snapshot_interval=3600))
    await worker.start()
    s = Stack(callout_nats, nc, keys, callout, system)
    yield s
    for conn in s.opened:
        if not conn.is_closed:
            await conn.close()
    await worker.stop()
    await purge_heartbeats(callout_nats.service_url, [worker.settings.worker_id])
    await callout.stop()
    await keys.close()
    await system.close()
    await nc.close()


def _remember(memory_id: str, seed: int) -> tuple[bytes, dict[str, str]]:
    cid = uuid.uuid4().hex
    body = {
        "schema_version": 1,
        "command_id": cid,
        "memory": {
            "id": memory_id,
            "content": f"memory {seed}",
            "embedding": random_unit(DIM, seed),
        },
    }
    return json.dumps(body).encode(), {"Nats-Msg-Id": cid}


async def _messages(nc: Client, space: str) -> int:
    return int((await nc.jetstream().stream_info(stream_name(space))).state.messages)


async def test_a_write_key_works_in_its_space_and_is_refused_everywhere_else(
    stack: Stack,
) -> None:
    mine, other = await stack.space("mine"), await stack.space("other")
    key = await stack.key("write", mine)
    agent = await stack.agent(key)
    js = agent.nc.jetstream()

    # its own space: remember (JetStream publish, PubAck), recall, events
    events = await agent.nc.subscribe(f"spaces.{mine}.evt.>")
    body, headers = _remember("m1", 1)
    ack = await js.publish(f"spaces.{mine}.remember", body, headers=headers)
    recall = {"embedding": random_unit(DIM, 1), "k": 1, "min_seq": ack.seq}
    got = await query_over_nats(agent.nc, mine, "recall", recall)
    assert got["results"][0]["memory"]["id"] == "m1"
    stored = await events.next_msg(timeout=5)
    assert stored.subject == f"spaces.{mine}.evt.stored"
    assert agent.errors == []

    # another space: no command, no query, no events
    before = await _messages(stack.nc, other)
    await agent.denied_publish(f"spaces.{other}.remember", _remember("x", 2)[0])
    await agent.denied_request(f"spaces.{other}.q.recall", json.dumps(recall).encode())
    await agent.denied_subscribe(f"spaces.{other}.evt.>")
    await agent.denied_subscribe("spaces.>")
    assert await _messages(stack.nc, other) == before
    # nor the workers' control subjects, nor JetStream's API on other streams
    await agent.denied_request("engram.ctl.status")
    await agent.denied_request(f"$JS.API.STREAM.DELETE.{stream_name(other)}")
    await agent.denied_request(f"$JS.API.STREAM.INFO.{stream_name(other)}")
    await agent.denied_request(f"$JS.API.STREAM.DELETE.{stream_name(mine)}")
    await agent.denied_request("$JS.API.STREAM.LIST")
    await agent.denied_request("$KV.ENGRAM_KEYS.x")
    await agent.denied_request("$JS.API.DIRECT.GET.KV_ENGRAM_KEYS.$KV.ENGRAM_KEYS.x")
    assert await _messages(stack.nc, other) == before  # the stream is still there
    # nor other connections' replies: only its own inbox prefix
    await agent.denied_subscribe("_INBOX.>")
    await agent.denied_subscribe("_INBOX_0123456789ab.>")
    # a connection of the same key with the default inbox prefix gets no replies
    plain = await stack.agent(None, token=key)
    with pytest.raises(nats.errors.TimeoutError):
        await plain.nc.request(f"spaces.{mine}.q.stats", b"{}", timeout=0.5)
    assert any('subscription to "_inbox.' in e.lower() for e in plain.errors), plain.errors
    # the connection survived its violations and still works in its space
    got = await query_over_nats(agent.nc, mine, "get", {"memory_id": "m1"})
    assert got["memory"]["content"] == "memory 1"


async def test_a_read_key_queries_but_cannot_write(stack: Stack) -> None:
    space = await stack.space("read")
    writer = await stack.agent(await stack.key("write", space))
    body, headers = _remember("m1", 3)
    ack = await writer.nc.jetstream().publish(f"spaces.{space}.remember", body, headers=headers)

    reader = await stack.agent(await stack.key("read", space))
    got = await query_over_nats(reader.nc, space, "get", {"memory_id": "m1", "min_seq": ack.seq})
    assert got["memory"]["id"] == "m1"
    for verb in ("remember", "forget", "link", "reinforce", "consolidate"):
        await reader.denied_publish(f"spaces.{space}.{verb}")
    await reader.denied_request(f"spaces.{space}.q.consolidate")
    assert await _messages(stack.nc, space) == 1


async def test_no_key_a_wrong_key_or_a_revoked_key_gets_no_connection(stack: Stack) -> None:
    space = await stack.space("refused")
    for token in (None, "", "egk_0123456789ab_" + "A" * 43, "not-a-key"):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await stack.agent(token)
    key = await stack.key("write", space)
    record_id = key.split("_")[1]
    assert await stack.keys.revoke(record_id)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await stack.agent(key)
    assert stack.callout.refused >= 5


async def test_a_revoked_keys_open_connection_is_cut_and_cannot_come_back(stack: Stack) -> None:
    space = await stack.space("revoked")
    key = await stack.key("write", space)
    other_key = await stack.key("write", space)
    agent = await stack.agent(key, allow_reconnect=True, max_reconnect_attempts=-1)
    bystander = await stack.agent(other_key)
    await query_over_nats(agent.nc, space, "stats", {})

    assert await stack.keys.revoke(key.split("_")[1])
    for _ in range(100):  # the callout sees the key go and disconnects it
        if agent.disconnects:
            break
        await asyncio.sleep(0.05)
    assert agent.disconnects == 1
    await asyncio.sleep(0.5)  # its reconnections are refused by the callout
    assert not agent.nc.is_connected
    assert any("Authorization Violation" in e for e in agent.errors), agent.errors
    assert stack.callout.kicked == 1
    # the other key's connection was left alone
    assert bystander.disconnects == 0
    await query_over_nats(bystander.nc, space, "stats", {})


async def test_an_admin_key_may_do_everything(stack: Stack) -> None:
    space = await stack.space("admin")
    admin = await stack.agent(await stack.key("admin"))
    body, headers = _remember("m1", 4)
    await admin.nc.jetstream().publish(f"spaces.{space}.remember", body, headers=headers)
    status = await admin.nc.request("engram.ctl.status", b"{}", timeout=5)
    assert "worker" in json.loads(status.data)
    info = await admin.nc.jetstream().stream_info(stream_name(space))
    assert info.state.messages == 1
    sub = await admin.nc.subscribe("_INBOX.>")
    await admin.nc.flush()
    await sub.unsubscribe()
    assert admin.errors == []
    # but not the callout's requests: they carry the keys of the agents connecting
    everything = await admin.nc.subscribe(">")
    await admin.nc.flush()
    await admin.denied_subscribe("$SYS.REQ.USER.AUTH")
    reader = await stack.agent(await stack.key("read", space))
    assert reader.nc.is_connected
    await asyncio.sleep(0.2)
    seen = []
    while True:
        try:
            seen.append((await everything.next_msg(timeout=0.05)).subject)
        except nats.errors.TimeoutError:
            break
    assert "$SYS.REQ.USER.AUTH" not in seen


async def test_while_the_callout_is_down_open_connections_work_and_new_ones_are_refused(
    stack: Stack,
) -> None:
    space = await stack.space("down")
    key = await stack.key("write", space)
    agent = await stack.agent(key)
    await stack.callout.stop()
    try:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await stack.agent(key)  # the server waits its auth timeout (1 s), then refuses
        body, headers = _remember("m1", 5)
        ack = await agent.nc.jetstream().publish(f"spaces.{space}.remember", body, headers=headers)
        got = await query_over_nats(agent.nc, space, "get", {"memory_id": "m1", "min_seq": ack.seq})
        assert got["memory"]["id"] == "m1"
    finally:
        await stack.callout.start()
    again = await stack.agent(key)
    await query_over_nats(again.nc, space, "stats", {})


async def test_the_sdk_over_nats_works_with_a_key_in_its_space(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    space, other = await stack.space("sdk"), await stack.space("sdk-other")
    key = await stack.key("write", space)
    async with EngramClient.nats(stack.server.url, api_key=key, timeout=60) as c:
        s = c.space(space)
        written = await s.remember("the deploy key lives in vault", id="m1")
        assert written.ids == ["m1"]
        found = await s.recall("where is the deploy key", k=1)
        assert found.results[0].memory.id == "m1"
        assert (await s.get("m1")).content == "the deploy key lives in vault"
        # refused as soon as the server reports the violation, not after the
        # client's 60 s timeout
        with pytest.raises(Forbidden, match="may not use memory space"):
            await asyncio.wait_for(c.space(other).recall("anything", k=1), 20)
    with pytest.raises(Unauthorized):
        async with EngramClient.nats(stack.server.url, api_key=key + "x") as c:
            pass
    monkeypatch.setenv("ENGRAM_API_KEY", key)  # as over HTTP, the default key
    async with EngramClient.nats(stack.server.url) as c:
        assert (await c.space(space).get("m1")).id == "m1"


async def test_a_key_reads_its_spaces_events_from_the_stream_and_no_others(
    stack: Stack,
) -> None:
    await ensure_events_stream(stack.nc.jetstream(), max_age=600)
    space, other = await stack.space("evt"), await stack.space("evt-other")
    key = await stack.key("write", space)
    async with EngramClient.nats(stack.server.url, api_key=key, timeout=5) as c:
        s = c.space(space)
        async with s.events(types=["stored"]) as events:
            first = await s.remember("first", id="m1")
            second = await s.remember("second", id="m2")
            got = [await asyncio.wait_for(events.__anext__(), 10) for _ in range(2)]
        assert [e.data.memory_id for e in got] == ["m1", "m2"]  # type: ignore[union-attr]
        assert [e.data.seq for e in got] == [first.seq, second.seq]  # type: ignore[union-attr]
        # resuming after the first one: the second, then nothing more
        async with s.events(last_event_id=got[0].id) as events:
            again = await asyncio.wait_for(events.__anext__(), 10)
        assert again.id == got[1].id and again.kind == "stored"
    # a consumer on another space's events is refused, whatever its name
    agent = await stack.agent(key)
    await agent.denied_request(
        f"$JS.API.CONSUMER.CREATE.ENGRAM_EVENTS.x.spaces.{other}.evt.>",
        json.dumps({"stream_name": "ENGRAM_EVENTS", "config": {"name": "x"}}).encode(),
    )
    await agent.denied_request("$JS.API.CONSUMER.CREATE.ENGRAM_EVENTS")
    await agent.denied_request("$JS.API.STREAM.INFO.ENGRAM_EVENTS")
    # nor by naming its own space in the subject and another in the request
    mismatch = {
        "stream_name": "ENGRAM_EVENTS",
        "config": {
            "name": "sly",
            "filter_subject": f"spaces.{other}.evt.>",
            "deliver_subject": f"{inbox_prefix(key)}.sly",
            "ack_policy": "none",
        },
    }
    reply = await agent.nc.request(
        f"$JS.API.CONSUMER.CREATE.ENGRAM_EVENTS.sly.spaces.{space}.evt.>",
        json.dumps(mismatch).encode(),
        timeout=5,
    )
    assert "error" in json.loads(reply.data), reply.data


async def test_a_system_connection_outside_the_system_account_is_refused(stack: Stack) -> None:
    wrong = AuthCallout(stack.nc, stack.keys, stack.server.secrets.issuer_seed, stack.nc)
    with pytest.raises(ValueError, match="not of the system account"):
        await wrong.start()
