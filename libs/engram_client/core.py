"""``EngramClient``: one async interface to Engram over HTTP or gRPC (the gateway) or NATS.

Inputs are validated here, with the models the gateway and the worker use
(:mod:`engram_contract.messages`), before anything is sent, so bad input raises
:class:`~engram_client.errors.InvalidInput` on every transport alike.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, get_args

import numpy as np
from pydantic import ValidationError

from engram_client.base import EventStream, SpaceInfo, Transport, Written
from engram_client.errors import field_error, invalid_input
from engram_contract.ids import MEMORY_ID_EXPECTED, MEMORY_ID_RE, space_id_problem
from engram_contract.messages import (
    MAX_BATCH,
    CreateSpace,
    LinkIn,
    ListRequest,
    ListResponse,
    Memory,
    MemoryIn,
    RecallMode,
    RecallRequest,
    RecallResponse,
    SpaceRecord,
    encode_embedding,
)
from engram_contract.subjects import EventKind

EVENT_KINDS: tuple[str, ...] = get_args(EventKind)

MemoryLike = MemoryIn | Mapping[str, Any] | str


def _space_id(space: str) -> str:
    problem = space_id_problem(space)
    if problem is not None:
        raise field_error("space", problem)
    return space


def _memory_id(memory_id: str, field: str = "memory_id") -> str:
    if not MEMORY_ID_RE.fullmatch(memory_id):
        raise field_error(field, f"{memory_id!r} is invalid: {MEMORY_ID_EXPECTED}")
    return memory_id


def _memory(item: MemoryLike) -> MemoryIn:
    if isinstance(item, MemoryIn):
        return item
    if isinstance(item, str):
        return MemoryIn(content=item)
    return MemoryIn.model_validate(dict(item))


class EngramClient:
    """An Engram client. Build one with :meth:`http`, :meth:`grpc` or :meth:`nats`
    and use it as an async context manager::

        async with EngramClient.http("http://127.0.0.1:7432") as engram:
            alpha = engram.space("alpha")
            await alpha.remember("the user has a cat named Tom", tags=["pets"])
            answer = await alpha.recall("what pet does the user have?", k=3)

    The transports behave the same and raise the same errors
    (:mod:`engram_client.errors`).
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @classmethod
    def http(
        cls,
        url: str = "http://127.0.0.1:7432",
        *,
        timeout: float = 30.0,
        api_key: str | None = None,
    ) -> EngramClient:
        """Talk to the gateway at ``url``. Writes return once the gateway has the
        PubAck (durable); reads wait for this gateway's earlier writes. ``api_key``
        (default: ``ENGRAM_API_KEY`` from the environment) is sent as
        ``Authorization: Bearer``."""
        from engram_client.http_transport import HttpTransport

        return cls(HttpTransport(url, timeout=timeout, api_key=api_key))

    @classmethod
    def grpc(
        cls,
        target: str = "127.0.0.1:7433",
        *,
        timeout: float = 30.0,
        api_key: str | None = None,
    ) -> EngramClient:
        """Talk to the gateway's gRPC API at ``target`` (``host:port``,
        ``ENGRAM_GRPC_PORT``): the same service as :meth:`http`, on protobuf.
        ``api_key`` (default: ``ENGRAM_API_KEY``) is sent as ``authorization:
        Bearer`` metadata."""
        from engram_client.grpc_transport import GrpcTransport

        return cls(GrpcTransport(target, timeout=timeout, api_key=api_key))

    @classmethod
    def nats(
        cls,
        url: str = "nats://127.0.0.1:4222",
        *,
        timeout: float = 10.0,
        default_dim: int = 384,
        default_embedder: str | None = None,
        auto_create_spaces: bool = True,
        replicas: int = 1,
        api_key: str | None = None,
    ) -> EngramClient:
        """Talk to NATS at ``url`` directly, as an agent whose permissions are
        ``spaces.<id>.>`` (plus the registry bucket) would.

        Writes are published into the space's WAL (``spaces.<id>.remember`` …)
        and return once JetStream acknowledged them (the PubAck is the durability
        guarantee); text without an embedding is embedded here with the space's
        embedder. Input is validated here first; a command the worker refuses
        anyway (a memory forgotten before a link to it is folded) is announced as
        a ``rejected`` event (:meth:`Space.events`), not raised. Queries are
        requests on ``spaces.<id>.q.*`` and wait for this client's earlier writes.
        ``default_dim``/``default_embedder``/``auto_create_spaces`` mirror the
        gateway's ``ENGRAM_DEFAULT_DIM``, ``ENGRAM_DEFAULT_EMBEDDER`` and
        ``ENGRAM_AUTO_CREATE_SPACES`` for spaces this client creates
        (``default_embedder`` unset: ``ENGRAM_DEFAULT_EMBEDDER``, else ``e5-small``).
        ``api_key`` (default: ``ENGRAM_API_KEY`` from the environment): the
        connection token on a NATS that checks keys (the auth callout); the
        client then uses only the key's spaces, and creates none.
        """
        from engram_client.nats_transport import NatsTransport

        return cls(
            NatsTransport(
                url,
                timeout=timeout,
                default_dim=default_dim,
                default_embedder=default_embedder,
                auto_create_spaces=auto_create_spaces,
                replicas=replicas,
                api_key=api_key,
            )
        )

    async def open(self) -> EngramClient:
        """Connect (``async with`` does it for you)."""
        await self.transport.open()
        return self

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> EngramClient:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- spaces ------------------------------------------------------------

    async def create_space(self, id: str, **settings: Any) -> SpaceRecord:
        """Create the space, or get it when it exists with compatible settings
        (``dim``, ``metric``, ``embedder``, ``links``, ``decay``, ``consolidation``
        as in ``POST /api/v1/spaces``; those left out match anything). Raises
        :class:`Conflict` when it exists with other settings."""
        _space_id(id)
        try:
            body = CreateSpace.model_validate({"id": id, **settings})
        except ValidationError as exc:
            raise invalid_input(exc) from None
        return await self.transport.create_space(body)

    async def spaces(self) -> list[SpaceRecord]:
        """Every active space."""
        return await self.transport.spaces()

    async def get_space(self, id: str) -> SpaceInfo:
        """The space's record, memory count and applied sequence (:class:`SpaceNotFound`)."""
        return await self.transport.get_space(_space_id(id))

    async def delete_space(self, id: str) -> None:
        """Delete the space, its WAL and snapshot: its content leaves the disk and
        the id is free again (:class:`SpaceNotFound` if there is none)."""
        await self.transport.delete_space(_space_id(id))

    def space(self, id: str) -> Space:
        """A handle on space ``id`` (nothing is sent until you use it)."""
        return Space(self, _space_id(id))


class Space:
    """One memory space of an :class:`EngramClient`."""

    def __init__(self, client: EngramClient, id: str) -> None:
        self.client = client
        self.id = id

    def __repr__(self) -> str:
        return f"Space({self.id!r})"

    @property
    def _t(self) -> Transport:
        return self.client.transport

    async def remember(
        self,
        content: str,
        *,
        id: str | None = None,
        embedding: builtins.list[float] | None = None,
        confidence: float | None = None,
        tags: builtins.list[str] | None = None,
        metadata: dict[str, str] | None = None,
        occurred_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """Store one memory (an existing ``id`` is replaced). Returns once the write
        is durable: ``Written.id`` and the stream ``seq``. An unknown space is
        created by its first write (while auto-creation is on)."""
        given = {
            "id": id,
            "embedding": embedding,
            "confidence": confidence,
            "tags": tags,
            "metadata": metadata,
            "occurred_at": occurred_at,
        }
        fields = {"content": content} | {k: v for k, v in given.items() if v is not None}
        try:
            memory = MemoryIn.model_validate(fields)
        except ValidationError as exc:
            raise invalid_input(exc) from None
        return await self._t.remember(self.id, [memory], idempotency_key)

    async def remember_many(
        self, memories: Iterable[MemoryLike], *, idempotency_key: str | None = None
    ) -> Written:
        """Store many memories: :class:`MemoryIn` s, dicts of its fields, or plain
        texts. All are validated before anything is sent (one bad memory raises
        :class:`InvalidInput` naming ``memories[i].field`` and nothing is stored);
        more than 1000 go in several requests. Returns every id and the last seq."""
        items = builtins.list(memories)
        if not items:
            raise field_error("memories", "give at least one memory")
        parsed: builtins.list[MemoryIn] = []
        for i, item in enumerate(items):
            try:
                parsed.append(_memory(item))
            except ValidationError as exc:
                raise invalid_input(exc, f"memories[{i}]") from None
        ids: builtins.list[str] = []
        seq = 0
        chunks = range(0, len(parsed), MAX_BATCH)
        for n, start in enumerate(chunks):
            key = idempotency_key
            if key is not None and len(chunks) > 1:
                key = f"{key}:{n}"
            written = await self._t.remember(self.id, parsed[start : start + MAX_BATCH], key)
            ids.extend(written.ids)
            seq = max(seq, written.seq)
        return Written(ids=ids, seq=seq)

    async def recall(
        self,
        cue: str | builtins.list[float] | np.ndarray,
        *,
        k: int = 10,
        mode: RecallMode = "spreading",
        tags: builtins.list[str] | None = None,
        **options: Any,
    ) -> RecallResponse:
        """Memories for a text cue (embedded with the space's embedder) or a vector
        (a numpy vector is sent as ``embedding_b64``, a list as ``embedding``),
        best first. ``mode``: ``similarity``, ``spreading`` (default) or
        ``hybrid``; more options (``seed_k``, ``max_hops``, ``hop_decay``,
        ``threshold``, ``max_fanout``, ``hybrid_weight``, ``since``, ``until``,
        ``trace``, ``reinforce``, ``consistency``, ``min_seq``) as in
        docs/recall.md. Sees this client's earlier writes."""
        fields: dict[str, Any] = {"k": k, "mode": mode, **options}
        if tags:
            fields["tags"] = tags
        if isinstance(cue, str):
            fields["query"] = cue
        elif isinstance(cue, np.ndarray):
            # base64 of float32: a third of the bytes, and parsed without a float list
            fields["embedding_b64"] = encode_embedding(cue)
        else:
            fields["embedding"] = cue
        try:
            request = RecallRequest.model_validate(fields)
        except ValidationError as exc:
            raise invalid_input(exc) from None
        return await self._t.recall(self.id, request)

    async def get(self, id: str, *, include_embedding: bool = False) -> Memory:
        """The memory (:class:`MemoryNotFound` when it is not in this space)."""
        return await self._t.get(self.id, _memory_id(id), include_embedding)

    async def list(
        self, *, limit: int = 100, cursor: str | None = None, include_embedding: bool = False
    ) -> ListResponse:
        """One page of memories in stream order; pass ``next_cursor`` back as
        ``cursor`` until it is ``None`` (or use :meth:`iter_memories`)."""
        try:
            request = ListRequest(limit=limit, cursor=cursor, include_embedding=include_embedding)
        except ValidationError as exc:
            raise invalid_input(exc) from None
        return await self._t.list(self.id, request)

    async def iter_memories(
        self, *, page_size: int = 500, include_embedding: bool = False
    ) -> AsyncIterator[Memory]:
        """Every memory of the space, page by page."""
        cursor: str | None = None
        while True:
            page = await self.list(
                limit=page_size, cursor=cursor, include_embedding=include_embedding
            )
            for memory in page.memories:
                yield memory
            cursor = page.next_cursor
            if cursor is None:
                return

    async def forget(self, id: str) -> int:
        """Forget the memory: dropped from index and records, its stored message
        erased from disk. Returns the forget command's seq (unknown ids: a no-op)."""
        return await self._t.forget(self.id, _memory_id(id))

    async def forget_many(self, ids: Iterable[str], *, idempotency_key: str | None = None) -> int:
        """Forget many memories, as :meth:`forget` does each (unknown ids: no-ops).
        Every id is validated before anything is sent (a bad one raises
        :class:`InvalidInput` naming ``ids[i]``); up to 1000 go in one request (or
        one pipelined batch of publishes), more in several. Returns the last seq
        once every forget command is in the WAL. Unlike a write of memories, it
        does not create the space: an unknown one raises :class:`SpaceNotFound`."""
        if isinstance(ids, str):
            raise field_error("ids", "give a list of memory ids, not one string")
        items = builtins.list(ids)
        if not items:
            raise field_error("ids", "give at least one memory id")
        for i, memory_id in enumerate(items):
            _memory_id(memory_id, f"ids[{i}]")
        seq = 0
        chunks = range(0, len(items), MAX_BATCH)
        for n, start in enumerate(chunks):
            key = idempotency_key
            if key is not None and len(chunks) > 1:
                key = f"{key}:{n}"
            chunk = items[start : start + MAX_BATCH]
            seq = max(seq, await self._t.forget_many(self.id, chunk, key))
        return seq

    async def link(self, a: str, b: str, *, weight: float = 1.0, kind: str = "related") -> int:
        """Associate two memories of this space (undirected; ``weight`` 0 removes
        the explicit link). :class:`MemoryNotFound` names a missing one; returns
        the link command's seq."""
        try:
            body = LinkIn(source=a, target=b, weight=weight, kind=kind)
        except ValidationError as exc:
            raise invalid_input(exc) from None
        return await self._t.link(self.id, body)

    def events(
        self, types: Iterable[str] | None = None, last_event_id: int | None = None
    ) -> EventStream:
        """This space's events (and no other space's), as typed :class:`Event` s::

            async with alpha.events(types=["stored"]) as events:
                async for event in events:
                    print(event.kind, event.data.memory_id)

        New events only, or those after ``last_event_id`` (an :attr:`Event.id`)
        while the events stream keeps them. Leaving ``async with`` frees the
        server-side consumer."""
        kinds = builtins.list(dict.fromkeys(types or ()))
        unknown = [k for k in kinds if k not in EVENT_KINDS]
        if unknown:
            raise field_error(
                "types",
                f"unknown event type(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(EVENT_KINDS)}",
            )
        if last_event_id is not None and last_event_id < 0:
            raise field_error("last_event_id", "must be 0 or more")
        return self._t.events(self.id, kinds, last_event_id)
