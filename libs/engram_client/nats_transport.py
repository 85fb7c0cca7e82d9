"""The SDK straight over NATS: commands into the space's WAL, queries by request.

What the gateway does for an HTTP client is done here, in the client, by the
same code: :class:`engram_nats.service.MemoryService` checks the space in the
registry (KV ``ENGRAM_SPACES``), embeds text with the space's embedder,
publishes one JetStream message per command with ``Nats-Msg-Id = command_id``
(a write returns once JetStream acknowledged it: that is the durability
guarantee) and keeps read-your-writes (queries wait for the highest sequence
this client wrote to the space).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
from collections.abc import Awaitable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from engram_client.base import Event, EventStream, SpaceInfo, Written, parse_event
from engram_client.errors import Forbidden, Unauthorized, Unavailable
from engram_contract.embedders import DEFAULT_EMBEDDER
from engram_contract.messages import (
    CreateSpace,
    EventsGap,
    GetResponse,
    LinkIn,
    ListRequest,
    ListResponse,
    Memory,
    MemoryIn,
    RecallRequest,
    RecallResponse,
    SpaceRecord,
    StatsResponse,
)
from engram_contract.subjects import REGISTRY_BUCKET
from engram_nats.authcallout import inbox_prefix
from engram_nats.connection import connect
from engram_nats.consumers import close_consumer
from engram_nats.registry import SpaceRegistry, direct_registry
from engram_nats.service import MemoryService
from engram_nats.spaces import SpacePolicy
from engram_nats.streams import EVENTS_STREAM, ensure_events_stream

#: Seconds the events stream keeps events when this client has to create it
#: (the gateway's ``ENGRAM_EVENTS_MAX_AGE`` default).
EVENTS_MAX_AGE = 3600.0
#: A consumer nobody reads is dropped by the server after this long (a backstop:
#: the stream deletes its consumer on close).
EVENTS_INACTIVE_S = 30.0
CREATE_HINT = "Create it with create_space() or write a memory to it."
T = TypeVar("T")


class _Violations:
    """The permissions violations the server reports on a connection
    (asynchronously, by subject), so that a refused request fails at once
    instead of waiting for its timeout."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[None]] = {}

    def feed(self, exc: Exception) -> None:
        # 'nats: permissions violation for publish to "<subject>"' (nats-py lowers it)
        text = str(exc).lower()
        if "permissions violation" in text and '"' in text:
            waiter = self._waiting.get(text.split('"')[1])
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def guard(self, subject: str, call: Awaitable[T]) -> T:
        """``call``'s result, or PermissionError as soon as the server refuses
        a publish to ``subject``."""
        key = subject.lower()
        waiter = self._waiting[key] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(call)
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            raise PermissionError(subject)
        finally:
            task.cancel()
            if self._waiting.get(key) is waiter:
                del self._waiting[key]


class _KeyRegistry(SpaceRegistry):
    """The registry as a key's NATS user reads it: one record at a time, of its
    own spaces; NATS refuses a read of another space's record (a permissions
    violation, reported asynchronously; a timeout if that report is lost)."""

    violations: _Violations | None = None

    def bind(self) -> None:
        """Use the bucket without looking it up and without a watch: records are
        read when used, one at a time, by direct get."""
        self._kv = direct_registry(self._js)

    async def get(self, space: str) -> SpaceRecord | None:
        subject = f"$JS.API.DIRECT.GET.KV_{REGISTRY_BUCKET}.$KV.{REGISTRY_BUCKET}.{space}"
        try:
            if self.violations is None:
                return await super().get(space)
            return await self.violations.guard(subject, super().get(space))
        except (nats.errors.TimeoutError, PermissionError):
            raise Forbidden(
                403,
                "Forbidden",
                f"this API key may not use memory space {space!r} "
                "(NATS refused to read its record)",
            ) from None


class NatsTransport:
    """Talks to NATS at ``url`` (comma-separated URLs for a cluster). One method
    per verb of :class:`~engram_client.base.Transport`, each a call of the
    shared :class:`MemoryService`."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        default_dim: int = 384,
        default_embedder: str | None = None,
        auto_create_spaces: bool = True,
        replicas: int = 1,
        connect_attempts: int = 3,
        api_key: str | None = None,
    ) -> None:
        self.url = url
        #: the connection token on a NATS with Engram's auth callout (docs/security.md);
        #: ENGRAM_API_KEY when not given, as over HTTP
        self.api_key = api_key if api_key is not None else os.environ.get("ENGRAM_API_KEY") or None
        self.timeout = timeout
        self.replicas = replicas
        self.connect_attempts = connect_attempts
        self.policy = SpacePolicy(
            default_dim=default_dim,
            # None: ENGRAM_DEFAULT_EMBEDDER, as the gateway reads it (else e5-small)
            default_embedder=default_embedder
            or os.environ.get("ENGRAM_DEFAULT_EMBEDDER")
            or DEFAULT_EMBEDDER,
            # a key's NATS user cannot create spaces (nor streams): an admin does
            auto_create=auto_create_spaces and self.api_key is None,
            create_hint=CREATE_HINT,
        )
        self._service: MemoryService | None = None

    @property
    def service(self) -> MemoryService:
        if self._service is None:
            raise RuntimeError("the client is not open: use `async with EngramClient.nats(...)`")
        return self._service

    @property
    def nc(self) -> Client:
        return self.service.nc

    @property
    def js(self) -> JetStreamContext:
        return self.service.js

    async def open(self) -> None:
        if self._service is not None:
            return
        key = self.api_key
        violations = _Violations()
        try:
            nc = await connect(
                self.url,
                "engram-sdk",
                attempts=self.connect_attempts,
                token=key,
                inbox_prefix=inbox_prefix(key) if key is not None else None,
                on_error=violations.feed,
            )
        except (OSError, nats.errors.Error) as exc:
            if key is not None and "authorization violation" in str(exc).lower():
                raise Unauthorized(
                    401,
                    "Unauthorized",
                    f"NATS at {self.url} refused the API key (unknown, revoked or malformed)",
                ) from None
            raise Unavailable(
                503,
                "NATS unavailable",
                f"cannot reach NATS at {self.url}: {exc or type(exc).__name__}",
            ) from None
        registry = (SpaceRegistry if key is None else _KeyRegistry)(
            nc.jetstream(), replicas=self.replicas
        )
        self._service = MemoryService(
            nc, registry, self.policy, publish_timeout=self.timeout, query_timeout=self.timeout
        )
        if isinstance(registry, _KeyRegistry):  # its own spaces' records only
            registry.violations = violations
            registry.bind()
            return
        try:
            await registry.open()
            await registry.start_watch()
            await registry.wait_loaded(self.timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        service, self._service = self._service, None
        if service is not None:
            await service.registry.close()
            with contextlib.suppress(Exception):
                await service.nc.drain()

    # -- spaces ------------------------------------------------------------

    async def create_space(self, body: CreateSpace) -> SpaceRecord:
        rec, _ = await self.service.create_space(body)
        return rec

    async def spaces(self) -> builtins.list[SpaceRecord]:
        return [r for r in self.service.registry.cached_all() if r.status == "active"]

    async def get_space(self, space: str) -> SpaceInfo:
        rec = await self.service.spaces.for_read(space)
        stats = StatsResponse.model_validate_json(await self.service.stats(space))
        return SpaceInfo(rec, stats.memories, stats.applied_seq)

    async def delete_space(self, space: str) -> None:
        await self.service.delete_space(space)

    # -- writes --------------------------------------------------------------

    async def remember(
        self, space: str, memories: builtins.list[MemoryIn], idempotency_key: str | None
    ) -> Written:
        ids, seq = await self.service.remember(
            space,
            memories,
            prefix="memories" if len(memories) > 1 else "",
            idempotency_key=idempotency_key,
        )
        return Written(ids=ids, seq=seq)

    async def forget(self, space: str, memory_id: str) -> int:
        return await self.service.forget(space, memory_id)

    async def forget_many(
        self, space: str, memory_ids: builtins.list[str], idempotency_key: str | None
    ) -> int:
        return await self.service.forget_many(space, memory_ids, idempotency_key)

    async def link(self, space: str, body: LinkIn) -> int:
        return await self.service.link(space, body)

    # -- queries -------------------------------------------------------------

    async def recall(self, space: str, request: RecallRequest) -> RecallResponse:
        return RecallResponse.model_validate_json(await self.service.recall(space, request))

    async def get(self, space: str, memory_id: str, include_embedding: bool) -> Memory:
        raw = await self.service.get(space, memory_id, include_embedding)
        return GetResponse.model_validate_json(raw).memory

    async def list(self, space: str, request: ListRequest) -> ListResponse:
        return ListResponse.model_validate_json(await self.service.list(space, request))

    def events(
        self, space: str, kinds: builtins.list[str], last_event_id: int | None
    ) -> EventStream:
        if self.api_key is not None:
            from engram_client.nats_events import KeyEventStream

            return KeyEventStream(self, space, kinds, last_event_id)
        return NatsEventStream(self, space, kinds, last_event_id)


class NatsEventStream(EventStream):
    """An ordered, ephemeral consumer on ``ENGRAM_EVENTS`` filtered to
    ``spaces.<id>.evt.>`` (or the kinds asked for); deleted on close."""

    def __init__(
        self, transport: NatsTransport, space: str, kinds: list[str], after: int | None
    ) -> None:
        self._transport = transport
        self._space = space
        self._filters = [f"spaces.{space}.evt.{k}" for k in kinds] or [f"spaces.{space}.evt.>"]
        self._after = after
        self._sub: Any = None
        self._gap: Event | None = None

    async def _open(self) -> None:
        t = self._transport
        await t.service.spaces.for_read(self._space)
        js = t.js
        try:
            await js.stream_info(EVENTS_STREAM)
        except nats.js.errors.NotFoundError:
            # no gateway has run against this NATS yet: the stream the events go to
            await ensure_events_stream(js, max_age=EVENTS_MAX_AGE, replicas=t.replicas)
        config = api.ConsumerConfig(
            filter_subjects=self._filters, inactive_threshold=EVENTS_INACTIVE_S
        )
        if self._after is None:
            config.deliver_policy = api.DeliverPolicy.NEW
        else:
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self._after + 1
            first = (await js.stream_info(EVENTS_STREAM)).state.first_seq
            if first > self._after + 1:  # what came after it is gone: say so first
                gap = EventsGap(space=self._space, after=self._after, first_kept=first)
                self._gap = Event(self._after, "gap", gap)
        self._sub = await js.subscribe(
            self._filters[0], stream=EVENTS_STREAM, config=config, ordered_consumer=True
        )

    async def _next(self) -> Event:
        if self._gap is not None:
            gap, self._gap = self._gap, None
            return gap
        while True:
            sub = self._sub
            if sub is None:
                raise StopAsyncIteration
            try:
                msg = await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except nats.errors.ConnectionClosedError:
                raise StopAsyncIteration from None
            try:
                seq = int(msg.metadata.sequence.stream)
            except nats.errors.NotJSMessageError:
                continue  # a control message
            event = parse_event(seq, msg.subject.rpartition(".")[2], msg.data)
            if event is not None:
                return event

    async def _close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await close_consumer(self._transport.js, EVENTS_STREAM, sub)
