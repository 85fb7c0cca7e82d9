"""The SDK straight over NATS: commands into the space's WAL, queries by request.

What the gateway does for an HTTP client is done here, in the client: the space
registry (KV ``ENGRAM_SPACES``, through :class:`SpaceRegistry`), embedding text
with the space's embedder, one JetStream publish per command with
``Nats-Msg-Id = command_id`` (a write returns once JetStream acknowledged it:
that is the durability guarantee), and read-your-writes (queries wait for the
highest sequence this client wrote to the space).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from engram_client.base import Event, EventStream, SpaceInfo, Written, parse_event
from engram_client.errors import (
    Conflict,
    MemoryNotFound,
    SpaceNotFound,
    Unavailable,
    error_for,
    field_error,
)
from engram_contract.embedders import Embedder, get_embedder
from engram_contract.ids import new_id
from engram_contract.messages import (
    Command,
    CreateSpace,
    EventsGap,
    ForgetCommand,
    GetRequest,
    GetResponse,
    LinkCommand,
    LinkIn,
    ListRequest,
    ListResponse,
    Memory,
    MemoryIn,
    Model,
    RecallRequest,
    RecallResponse,
    SpaceRecord,
    StatsRequest,
    StatsResponse,
)
from engram_contract.subjects import CommandVerb, QueryName, command_subject, query_subject
from engram_contract.subjects import stream_name as wal_stream
from engram_nats.commands import FieldInvalid, remember_commands, to_embed
from engram_nats.connection import connect
from engram_nats.consumers import close_consumer
from engram_nats.registry import SpaceConflict, SpaceLimitReached, SpaceRegistry
from engram_nats.streams import EVENTS_STREAM, ensure_events_stream, purge_events

_NO_RESPONDERS_BACKOFF = (0.02, 0.05, 0.1, 0.2, 0.4)
#: Seconds the events stream keeps events when this client has to create it
#: (the gateway's ``ENGRAM_EVENTS_MAX_AGE`` default).
EVENTS_MAX_AGE = 3600.0
#: A consumer nobody reads is dropped by the server after this long (a backstop:
#: the stream deletes its consumer on close).
EVENTS_INACTIVE_S = 30.0


def _not_found(space: str) -> SpaceNotFound:
    return SpaceNotFound(
        f"memory space {space!r} does not exist",
        status=404,
        title="Space not found",
        hint="Create it with create_space() or write a memory to it.",
    )


class NatsTransport:
    """Talks to NATS at ``url`` (comma-separated URLs for a cluster)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        default_dim: int = 384,
        default_embedder: str = "hash-ngram-v1",
        auto_create_spaces: bool = True,
        replicas: int = 1,
        connect_attempts: int = 3,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.default_dim = default_dim
        self.default_embedder = default_embedder
        self.auto_create_spaces = auto_create_spaces
        self.replicas = replicas
        self.connect_attempts = connect_attempts
        self._nc: Client | None = None
        self._registry: SpaceRegistry | None = None
        self._embedders: dict[tuple[str, int], Embedder] = {}
        #: highest acknowledged stream sequence per space: read-your-writes
        self.acked: dict[str, int] = {}

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError("the client is not open: use `async with EngramClient.nats(...)`")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()

    @property
    def registry(self) -> SpaceRegistry:
        assert self._registry is not None
        return self._registry

    async def open(self) -> None:
        if self._nc is not None:
            return
        try:
            nc = await connect(self.url, "engram-sdk", attempts=self.connect_attempts)
        except (OSError, nats.errors.Error) as exc:
            raise Unavailable(
                f"cannot reach NATS at {self.url}: {exc or type(exc).__name__}",
                title="NATS unavailable",
            ) from None
        self._nc = nc
        try:
            registry = SpaceRegistry(nc.jetstream(), replicas=self.replicas)
            await registry.open()
            await registry.start_watch()
            self._registry = registry
            await registry.wait_loaded(self.timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        registry, self._registry = self._registry, None
        if registry is not None:
            await registry.close()
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.drain()

    def _embedder(self, rec: SpaceRecord) -> Embedder:
        key = (rec.embedder, rec.dim)
        if key not in self._embedders:
            self._embedders[key] = get_embedder(rec.embedder, rec.dim)
        return self._embedders[key]

    # -- spaces ------------------------------------------------------------

    async def _record(self, space: str) -> SpaceRecord | None:
        return self.registry.cached(space) or await self.registry.get(space)

    async def _readable(self, space: str) -> SpaceRecord:
        rec = await self._record(space)
        if rec is None or rec.status != "active":
            raise _not_found(space)
        return rec

    async def _writable(self, space: str, *, create: bool = True) -> SpaceRecord:
        """As the gateway: an unknown space is created by its first write (unless
        auto-creation is off, or the write is about memories that must exist)."""
        rec = await self._record(space)
        if rec is None:
            if not (create and self.auto_create_spaces):
                raise _not_found(space)
            rec = await self.create_space(CreateSpace(id=space))
        if rec.status != "active":
            raise Conflict(
                f"memory space {space!r} is {rec.status}", status=409, title="Space not writable"
            )
        return rec

    async def create_space(self, body: CreateSpace) -> SpaceRecord:
        if body.embedder is not None:
            try:
                get_embedder(body.embedder, body.dim or self.default_dim)
            except ValueError as exc:
                raise field_error("embedder", str(exc)) from None
        try:
            rec, _ = await self.registry.create_or_get(
                body.id,
                dim=body.dim,
                metric=body.metric if "metric" in body.model_fields_set else None,
                embedder=body.embedder,
                links=body.links,
                decay=body.decay,
                consolidation=body.consolidation,
                default_dim=self.default_dim,
                default_embedder=self.default_embedder,
            )
        except SpaceConflict as exc:
            raise Conflict(str(exc), status=409, title="Space conflict") from None
        except SpaceLimitReached as exc:
            raise Conflict(str(exc), status=409, title="Space limit reached") from None
        return rec

    async def spaces(self) -> builtins.list[SpaceRecord]:
        return [r for r in self.registry.cached_all() if r.status == "active"]

    async def get_space(self, space: str) -> SpaceInfo:
        rec = await self._readable(space)
        raw = await self._query(space, "stats", StatsRequest(min_seq=self.acked.get(space)))
        stats = StatsResponse.model_validate_json(raw)
        return SpaceInfo(rec, stats.memories, stats.applied_seq)

    async def delete_space(self, space: str) -> None:
        rec = await self.registry.mark_deleting(space)
        if rec is None:
            raise _not_found(space)
        self.acked.pop(space, None)
        await self.registry.remove(space)
        await purge_events(self.js, space)

    # -- writes --------------------------------------------------------------

    async def _publish(self, space: str, verb: CommandVerb, commands: Sequence[Command]) -> int:
        """One WAL message per command, pipelined; the last acknowledged seq."""
        subject, stream = command_subject(space, verb), wal_stream(space)
        futures: list[asyncio.Future[Any]] = []
        try:
            for cmd in commands:
                futures.append(  # noqa: PERF401
                    await self.js.publish_async(
                        subject,
                        cmd.model_dump_json(exclude_none=True).encode(),
                        headers={"Nats-Msg-Id": cmd.command_id},
                        stream=stream,
                    )
                )
            acks = await asyncio.wait_for(asyncio.gather(*futures), self.timeout)
        except (TimeoutError, nats.errors.TimeoutError, nats.js.errors.TooManyStalledMsgsError):
            for f in futures:
                f.cancel()
            raise Unavailable(
                f"JetStream did not acknowledge the write to space {space!r} in time; "
                "some memories may be stored",
                status=503,
                title="Not acknowledged",
                hint="Retry with the same idempotency_key: stored memories are not duplicated.",
            ) from None
        except (
            nats.js.errors.NoStreamResponseError,
            nats.js.errors.APIError,
            nats.errors.ConnectionClosedError,
            nats.errors.OutboundBufferLimitError,
        ) as exc:
            for f in futures:
                f.cancel()
            raise Unavailable(
                f"could not write to space {space!r}: {exc!r}", status=503, title="Write failed"
            ) from None
        last = max(int(a.seq) for a in acks)
        if last > self.acked.get(space, 0):
            self.acked[space] = last
        return last

    async def remember(
        self, space: str, memories: builtins.list[MemoryIn], idempotency_key: str | None
    ) -> Written:
        rec = await self._writable(space)
        positions = to_embed(memories)
        embedded = {}
        if positions:
            vectors = await asyncio.to_thread(
                self._embedder(rec).embed, [memories[k].content for k in positions]
            )
            embedded = dict(zip(positions, vectors, strict=True))
        try:
            commands = remember_commands(
                space,
                rec,
                memories,
                embedded,
                prefix="memories" if len(memories) > 1 else "",
                idempotency_key=idempotency_key,
            )
        except FieldInvalid as exc:
            raise field_error(exc.field, exc.message) from None
        seq = await self._publish(space, "remember", commands)
        return Written(ids=[c.memory.id or "" for c in commands], seq=seq)

    async def forget(self, space: str, memory_id: str) -> int:
        await self._writable(space)
        return await self._publish(
            space, "forget", [ForgetCommand(command_id=new_id(), memory_id=memory_id)]
        )

    async def forget_many(
        self, space: str, memory_ids: builtins.list[str], idempotency_key: str | None
    ) -> int:
        # as the gateway's POST …/forget: the space must exist, one command per id
        await self._writable(space, create=False)
        commands = [
            ForgetCommand(
                command_id=new_id() if idempotency_key is None else f"{idempotency_key}:{i}",
                memory_id=memory_id,
            )
            for i, memory_id in enumerate(memory_ids)
        ]
        return await self._publish(space, "forget", commands)

    async def link(self, space: str, body: LinkIn) -> int:
        await self._writable(space, create=False)
        # as the gateway: both memories must be in the space (after our writes)
        min_seq = self.acked.get(space)
        answers = await asyncio.gather(
            *(
                self._query(space, "get", GetRequest(memory_id=m, min_seq=min_seq))
                for m in (body.source, body.target)
            ),
            return_exceptions=True,
        )
        errors = []
        for field, memory_id, answer in zip(
            ("source", "target"), (body.source, body.target), answers, strict=True
        ):
            if isinstance(answer, MemoryNotFound):
                errors.append(
                    {"field": field, "message": f"memory {memory_id!r} does not exist in {space!r}"}
                )
            elif isinstance(answer, BaseException):
                raise answer
        if errors:
            raise error_for(
                404,
                "Memory not found",
                "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                errors=errors,
            )
        command = LinkCommand(
            command_id=new_id(),
            source=body.source,
            target=body.target,
            weight=body.weight,
            kind=body.kind,
        )
        return await self._publish(space, "link", [command])

    # -- queries -------------------------------------------------------------

    async def _request(self, subject: str, payload: bytes) -> Msg:
        # a worker that has just subscribed can miss a request by a few ms
        for delay in _NO_RESPONDERS_BACKOFF:
            try:
                return await self.nc.request(subject, payload, timeout=self.timeout)
            except nats.errors.NoRespondersError:
                await asyncio.sleep(delay)
        return await self.nc.request(subject, payload, timeout=self.timeout)

    async def _query(self, space: str, name: QueryName, body: Model) -> bytes:
        """The worker's raw JSON reply; an error reply raises the matching error."""
        payload = body.model_dump_json(exclude_none=True).encode()
        try:
            msg = await self._request(query_subject(space, name), payload)
        except (nats.errors.OutboundBufferLimitError, nats.errors.ConnectionClosedError):
            raise Unavailable(
                f"cannot reach NATS to ask about space {space!r}",
                status=503,
                title="NATS unavailable",
            ) from None
        except nats.errors.NoRespondersError:
            raise Unavailable(
                f"no worker is serving space {space!r} right now",
                status=503,
                title="No worker",
                hint="Start a worker (engram worker) or retry shortly.",
                retry_after=1.0,
            ) from None
        except nats.errors.TimeoutError:
            raise Unavailable(
                f"the worker for space {space!r} did not answer in {self.timeout:g}s",
                status=504,
                title="Worker timeout",
            ) from None
        data = bytes(msg.data)
        if data.startswith(b'{"error"'):
            err = json.loads(data)["error"]
            raise error_for(int(err["status"]), str(err["title"]), str(err["detail"]))
        return data

    async def recall(self, space: str, request: RecallRequest) -> RecallResponse:
        rec = await self._readable(space)
        if request.embedding is not None and len(request.embedding) != rec.dim:
            raise field_error(
                "embedding",
                f"expected {rec.dim} values (space {space!r} has dim {rec.dim}), "
                f"got {len(request.embedding)}",
            )
        if request.consistency == "read_your_writes" and request.min_seq is None:
            request = request.model_copy(update={"min_seq": self.acked.get(space)})
        return RecallResponse.model_validate_json(await self._query(space, "recall", request))

    async def get(self, space: str, memory_id: str, include_embedding: bool) -> Memory:
        await self._readable(space)
        request = GetRequest(
            memory_id=memory_id, include_embedding=include_embedding, min_seq=self.acked.get(space)
        )
        return GetResponse.model_validate_json(await self._query(space, "get", request)).memory

    async def list(self, space: str, request: ListRequest) -> ListResponse:
        await self._readable(space)
        if request.min_seq is None:
            request = request.model_copy(update={"min_seq": self.acked.get(space)})
        return ListResponse.model_validate_json(await self._query(space, "list", request))

    def events(
        self, space: str, kinds: builtins.list[str], last_event_id: int | None
    ) -> EventStream:
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
        await t._readable(self._space)
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
