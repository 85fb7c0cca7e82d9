"""The memory operations of a client of Engram's NATS side, written once: what
the gateway does for an HTTP client and the SDK does over NATS.

A write checks the space (creating it on its first write, when allowed),
embeds text with the space's embedder (off the event loop:
:mod:`engram_nats.embedding`), publishes one WAL message per command
and returns once JetStream acknowledged them (durable). A read asks the worker
hosting the space, after this client's own writes (read-your-writes). Failures
are :mod:`engram_contract.errors`.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import numpy as np
from nats.aio.client import Client
from nats.js import JetStreamContext

from engram_contract.errors import MemoryNotFound, field_error
from engram_contract.ids import new_id
from engram_contract.messages import (
    Command,
    CreateSpace,
    ForgetCommand,
    GetRequest,
    LinkCommand,
    LinkIn,
    ListRequest,
    MemoryIn,
    Model,
    RecallRequest,
    RecallWire,
    RememberCommand,
    SpaceRecord,
    StatsRequest,
    encode_embedding,
    encode_query,
    with_min_seq,
)
from engram_contract.placement import hosts
from engram_contract.subjects import CommandVerb, QueryName
from engram_nats import quotas, wire
from engram_nats.commands import FieldInvalid, remember_commands, to_embed
from engram_nats.embedding import Embedding
from engram_nats.liveness import Liveness
from engram_nats.membership import Membership
from engram_nats.registry import SpaceRegistry
from engram_nats.spaces import SpaceAccess, SpacePolicy

log = logging.getLogger(__name__)

#: Batches larger than this are made into commands in a thread (the event loop keeps going).
EMBED_INLINE_MAX = 32


class AckedSeqs(dict[str, int]):
    """The highest stream sequence per space known to be in its WAL (written by
    this client, or on its behalf): the ``min_seq`` of read-your-writes queries."""

    def note(self, space: str, seq: int) -> None:
        if seq > self.get(space, 0):
            self[space] = seq

    async def on_space_change(self, space: str, rec: SpaceRecord | None) -> None:
        """Registry listener: a deleted (or re-created) space starts from seq 0."""
        if rec is None or rec.status != "active":
            self.pop(space, None)


def _commands(
    space: str,
    rec: SpaceRecord,
    memories: Sequence[MemoryIn],
    embedded: dict[int, np.ndarray],
    prefix: str,
    idempotency_key: str | None,
) -> list[RememberCommand]:
    """The commands, with the vectors of what had text only (a 400 naming a
    vector that does not fit the space)."""
    try:
        return remember_commands(
            space, rec, memories, embedded, prefix=prefix, idempotency_key=idempotency_key
        )
    except FieldInvalid as exc:
        raise field_error(exc.field, exc.message) from None


class MemoryService:
    """Remember, forget, link, recall, get, list and space lifecycle over NATS.

    Query methods return the worker's raw JSON answer: the gateway forwards it
    as it is, the SDK parses it into the answer's model.
    """

    def __init__(
        self,
        nc: Client,
        registry: SpaceRegistry,
        policy: SpacePolicy,
        *,
        publish_timeout: float = 10.0,
        query_timeout: float = 10.0,
        membership: Membership | None = None,
        space_replicas: int = 1,
    ) -> None:
        self.nc = nc
        #: the live workers: a query whose space loses a host while it waits is
        #: asked again at once (another replica, or the space's next host, answers)
        self.membership = membership
        self.space_replicas = space_replicas
        self.registry = registry
        self.spaces = SpaceAccess(registry, policy)
        self.embedding = Embedding()
        self.acked = AckedSeqs()
        self.publish_timeout = publish_timeout
        self.query_timeout = query_timeout
        #: the connection's watcher (the gateway's): writes and queries waiting
        #: when NATS has been gone a while answer 503 instead of their timeouts
        self.liveness: Liveness | None = None
        registry.on_change(self.acked.on_space_change)

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()

    # -- spaces ----------------------------------------------------------------

    async def create_space(self, body: CreateSpace) -> tuple[SpaceRecord, bool]:
        """The space (``True``: created now), or a 409 when it exists otherwise."""
        return await self.spaces.create(body)

    async def delete_space(self, space: str) -> None:
        """Mark the space deleting, then delete its record and events."""
        await self.spaces.delete(self.js, space)
        self.acked.pop(space, None)

    async def stats(self, space: str) -> bytes:
        """The ``StatsResponse`` of an active space, after this client's writes."""
        await self.spaces.for_read(space)
        return await self.query(space, "stats", StatsRequest(min_seq=self.acked.get(space)))

    # -- the wire --------------------------------------------------------------

    async def publish(self, space: str, verb: CommandVerb, commands: Sequence[Command]) -> int:
        """One WAL message per command, pipelined; the last acknowledged seq."""
        return await self.publish_raw(
            space, ((verb, c.command_id, wire.encode(c)) for c in commands)
        )

    async def publish_raw(
        self, space: str, messages: Iterable[tuple[CommandVerb, str, bytes]]
    ) -> int:
        """Publish ``(verb, command_id, body)`` messages (bodies validated and
        encoded already); the last acknowledged seq, noted for read-your-writes.
        Remembers past the space's quota are refused first, all of them."""
        batch = list(messages)
        remembers = [m for m in batch if m[0] == "remember"]
        if remembers:
            rec = await self.spaces.record(space)
            if rec is not None and (rec.max_memories or rec.max_bytes):
                await quotas.check(self, rec, remembers)
        sent = wire.publish(self.js, space, batch, timeout=self.publish_timeout)
        if self.liveness is not None:
            seq = await self.liveness.cut(sent, "the write may be partly stored")
        else:
            seq = await sent
        self.acked.note(space, seq)
        return seq

    async def query(
        self, space: str, name: QueryName, body: Model | dict[str, Any] | bytes
    ) -> bytes:
        """The raw JSON answer of the worker hosting ``space`` (errors raised)."""
        if self.liveness is None:
            return await self._query(space, name, body)
        return await self.liveness.cut(self._query(space, name, body), f"the {name} query")

    async def _query(
        self, space: str, name: QueryName, body: Model | dict[str, Any] | bytes
    ) -> bytes:
        """:meth:`query` without the liveness cut.

        With :attr:`membership`, a query is asked again when a host of its space
        is lost while it waits (killed with the query in hand): the other replica
        answers, instead of the query timing out."""
        members = self.membership
        if members is None:
            return await wire.query(self.nc, space, name, body, timeout=self.query_timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.query_timeout
        while True:
            placed = frozenset(hosts(space, members.live(), self.space_replicas))
            left = max(deadline - loop.time(), 0.001)
            asked = asyncio.ensure_future(wire.query(self.nc, space, name, body, timeout=left))
            lost = asyncio.ensure_future(members.wait_gone(placed))
            try:
                await asyncio.wait({asked, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
            if asked.done() or loop.time() >= deadline:
                return await asked
            asked.cancel()
            log.info(
                "query %s of space %s: a host was lost while it waited; asking again", name, space
            )

    # -- writes ----------------------------------------------------------------

    async def remember(
        self,
        space: str,
        memories: builtins.list[MemoryIn],
        *,
        prefix: str = "",
        idempotency_key: str | None = None,
    ) -> tuple[builtins.list[str], int]:
        """Store memories (embedding those with text only); their ids and the last
        seq. ``prefix`` names the batch field in errors (``memories[3].embedding``);
        with an ``idempotency_key`` a retry names and stores the same memories."""
        rec = await self.spaces.for_write(space)
        embedded: dict[int, np.ndarray] = {}
        positions = to_embed(memories)
        if positions:  # before anything is published: a failure writes nothing
            vectors = await self.embedding.documents(
                self.spaces.embedder(rec), [memories[i].content for i in positions]
            )
            embedded = dict(zip(positions, vectors, strict=True))
        args = (space, rec, memories, embedded, prefix, idempotency_key)
        if len(memories) > EMBED_INLINE_MAX:
            commands = await asyncio.to_thread(_commands, *args)
        else:
            commands = _commands(*args)
        seq = await self.publish(space, "remember", commands)
        return [c.memory.id or "" for c in commands], seq

    async def forget(self, space: str, memory_id: str, command_id: str | None = None) -> int:
        """Forget one memory (an unknown id is a no-op); the seq of the command."""
        await self.spaces.for_write(space)
        command = ForgetCommand(command_id=command_id or new_id(), memory_id=memory_id)
        return await self.publish(space, "forget", [command])

    async def forget_many(
        self, space: str, memory_ids: builtins.list[str], idempotency_key: str | None = None
    ) -> int:
        """One forget command per id (command ids ``<key>:<index>`` with an
        idempotency key); the space must exist. The last seq."""
        await self.spaces.for_write(space, create=False)
        commands = [
            ForgetCommand(
                command_id=new_id() if idempotency_key is None else f"{idempotency_key}:{i}",
                memory_id=memory_id,
            )
            for i, memory_id in enumerate(memory_ids)
        ]
        return await self.publish(space, "forget", commands)

    async def link(self, space: str, body: LinkIn, command_id: str | None = None) -> int:
        """Link two memories that are in the space (else a 404 naming which)."""
        await self.spaces.for_write(space, create=False)
        await self.check_link_endpoints(space, {"source": body.source, "target": body.target})
        # a memory forgotten between this check and the fold makes the worker reject
        # the command (spaces.<id>.evt.rejected): the WAL decides, not this check
        command = LinkCommand(
            command_id=command_id or new_id(),
            source=body.source,
            target=body.target,
            weight=body.weight,
            kind=body.kind,
        )
        return await self.publish(space, "link", [command])

    async def check_link_endpoints(self, space: str, ids: dict[str, str]) -> None:
        """Raise a 404 naming each of ``ids`` (field → memory id) that the space
        lacks (asked of the worker, concurrently, after this client's writes)."""
        min_seq = self.acked.get(space)
        answers = await asyncio.gather(
            *(
                self.query(space, "get", GetRequest(memory_id=memory_id, min_seq=min_seq))
                for memory_id in ids.values()
            ),
            return_exceptions=True,
        )
        errors = []
        for (field, memory_id), answer in zip(ids.items(), answers, strict=True):
            # the worker's 404 for the memory; any other error (the space gone, no
            # worker, a timeout) passes through as it is
            if isinstance(answer, MemoryNotFound):
                errors.append(
                    {"field": field, "message": f"memory {memory_id!r} does not exist in {space!r}"}
                )
            elif isinstance(answer, BaseException):
                raise answer
        if errors:
            raise MemoryNotFound(
                404,
                "Memory not found",
                "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                hint="Link memories that are stored in this space.",
                errors=errors,
            )

    # -- reads -----------------------------------------------------------------

    async def recall(
        self, space: str, request: RecallRequest | RecallWire, body: bytes | None = None
    ) -> bytes:
        """The ``RecallResponse`` (read-your-writes unless asked otherwise).
        ``body``: the bytes ``request`` was parsed from (validated), forwarded as
        they are, so a vector is not encoded again."""
        rec = await self.spaces.for_read(space)
        wired = request if isinstance(request, RecallWire) else None
        if wired is None:
            assert isinstance(request, RecallRequest)
            wired = msgspec.convert(request.model_dump(exclude_none=True), RecallWire)
            body = None
        dim = wired.cue_dim
        if dim is not None and dim != rec.dim:
            field = "embedding" if wired.embedding is not None else "embedding_b64"
            raise field_error(
                field,
                f"expected {rec.dim} values (space {space!r} has dim {rec.dim}), got {dim}",
            )
        if wired.query is not None:
            embedder = self.spaces.embedder(rec)
            if not embedder.inline:  # a model or an endpoint: here, not on the worker's loop
                cue = await self.embedding.query(embedder, wired.query)
                wired = msgspec.structs.replace(
                    wired, query=None, embedding_b64=encode_embedding(cue)
                )
                body = None
        if wired.consistency == "read_your_writes" and wired.min_seq is None:
            acked = self.acked.get(space)
            if acked is not None:
                wired, body = with_min_seq(wired, body or encode_query(wired), acked)
        return await self.query(space, "recall", body or encode_query(wired))

    async def get(self, space: str, memory_id: str, include_embedding: bool = False) -> bytes:
        """The ``GetResponse`` of one memory (a 404 when the space lacks it)."""
        await self.spaces.for_read(space)
        request = GetRequest(
            memory_id=memory_id, include_embedding=include_embedding, min_seq=self.acked.get(space)
        )
        return await self.query(space, "get", request)

    async def list(self, space: str, request: ListRequest) -> bytes:
        """A ``ListResponse`` page of the space's memories, in stream order."""
        await self.spaces.for_read(space)
        if request.min_seq is None:
            request = request.model_copy(update={"min_seq": self.acked.get(space)})
        return await self.query(space, "list", request)
