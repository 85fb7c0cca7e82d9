"""The space registry: KV ``ENGRAM_SPACES`` with a watched local cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from engram_contract.ids import validate_space_id
from engram_contract.messages import (
    ConsolidationSettings,
    DecaySettings,
    LinkSettings,
    Metric,
    NatsClusterState,
    SpaceRecord,
)
from engram_contract.subjects import REGISTRY_BUCKET, stream_name
from engram_nats.snapshots import SnapshotBucket
from engram_nats.streams import space_stream_config

log = logging.getLogger(__name__)


class SpaceConflict(ValueError):
    """A space exists with settings other than the ones asked for."""


class SpaceLimitReached(RuntimeError):
    pass


Listener = Callable[[str, SpaceRecord | None], Awaitable[None]]


async def allow_direct_gets(js: JetStreamContext) -> KeyValue:
    """Turn on direct gets on a registry bucket made before they were used: an
    agent's key reads its own spaces' records by ``$JS.API.DIRECT.GET.<stream>.<subject>``,
    a subject its NATS permissions can name (see :mod:`engram_nats.authcallout`)."""
    info = await js.stream_info(f"KV_{REGISTRY_BUCKET}")
    info.config.allow_direct = True
    await js.update_stream(info.config)
    return await js.key_value(REGISTRY_BUCKET)


def direct_registry(js: JetStreamContext) -> KeyValue:
    """The registry bucket, not looked up (no stream info), read by direct gets."""
    stream = f"KV_{REGISTRY_BUCKET}"
    return KeyValue(REGISTRY_BUCKET, stream, f"$KV.{REGISTRY_BUCKET}.", js, True)


class SpaceRegistry:
    """The registry of spaces in KV ``ENGRAM_SPACES``, with a watched local cache.

    ``create_or_get`` is atomic across processes: the stream is created first
    (idempotent for an identical config), then the record with KV ``create``,
    which only one caller wins; the others read the winner's record.
    """

    def __init__(self, js: JetStreamContext, *, replicas: int = 1) -> None:
        self._js = js
        self._replicas = replicas
        self._kv: KeyValue | None = None
        self._cache: dict[str, SpaceRecord] = {}
        self._listeners: list[Listener] = []
        self._watch_task: asyncio.Task[None] | None = None
        self.loaded = asyncio.Event()

    @property
    def kv(self) -> KeyValue:
        assert self._kv is not None, "SpaceRegistry.open() first"
        return self._kv

    async def open(self) -> None:
        try:
            kv = await self._js.key_value(REGISTRY_BUCKET)
        except BucketNotFoundError:
            kv = await self._js.create_key_value(
                bucket=REGISTRY_BUCKET,
                history=1,
                storage=api.StorageType.FILE,
                replicas=self._replicas,
                description="Engram memory space registry",
                direct=True,
            )
        self._kv = kv if kv._direct else await allow_direct_gets(self._js)

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(space_id, record_or_None)`` on every registry change."""
        self._listeners.append(listener)

    async def start_watch(self) -> None:
        """Follow the registry; :attr:`loaded` is set once the current state is in."""
        watcher = await self.kv.watchall()

        async def run() -> None:
            async for entry in watcher:
                if entry is None:
                    self.loaded.set()
                    continue
                rec: SpaceRecord | None = None
                if entry.operation is None and entry.value:
                    try:
                        rec = SpaceRecord.model_validate_json(entry.value)
                    except ValidationError:
                        log.error("registry: unreadable record for %r", entry.key)
                        continue
                if rec is None:
                    self._cache.pop(entry.key, None)
                else:
                    self._cache[entry.key] = rec
                for listener in self._listeners:
                    try:
                        await listener(entry.key, rec)
                    except Exception:
                        log.exception("registry listener failed for %r", entry.key)

        self._watch_task = asyncio.create_task(run(), name="registry-watch")
        self._watcher = watcher

    @property
    def watching(self) -> bool:
        """Whether the watch :meth:`start_watch` began is still following the registry."""
        return self._watch_task is not None and not self._watch_task.done()

    async def wait_loaded(self, timeout: float = 30.0) -> None:
        """Wait until the watch has delivered the registry's current state, then
        read any record it has not yet: nats-py's watcher can announce the end of
        the initial values while some are still queued (seen with ~150 spaces)."""
        await asyncio.wait_for(self.loaded.wait(), timeout)
        info = await self._js.stream_info(
            f"KV_{REGISTRY_BUCKET}", subjects_filter=f"$KV.{REGISTRY_BUCKET}.>"
        )
        prefix = len(f"$KV.{REGISTRY_BUCKET}.")
        for subject in sorted(info.state.subjects or {}):
            key = subject[prefix:]
            if key not in self._cache:
                with contextlib.suppress(ValidationError):
                    await self.get(key)  # None (and nothing cached) for a deleted one

    async def close(self) -> None:
        if self._watch_task is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()  # type: ignore[no-untyped-call]
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task

    def cached(self, space: str) -> SpaceRecord | None:
        return self._cache.get(space)

    def cached_all(self) -> list[SpaceRecord]:
        return sorted(self._cache.values(), key=lambda r: r.id)

    async def get(self, space: str) -> SpaceRecord | None:
        """Read the record from KV (not the cache) and refresh the cache."""
        try:
            entry = await self.kv.get(space)
        except KeyNotFoundError:
            self._cache.pop(space, None)
            return None
        if not entry.value:
            return None
        rec = SpaceRecord.model_validate_json(entry.value)
        self._cache[space] = rec
        return rec

    async def mark_deleting(self, space: str) -> SpaceRecord | None:
        """Turn the record ``deleting`` (writes refused, reads 404, workers unload);
        ``None`` when there is no such space. Idempotent."""
        while True:
            try:
                entry = await self.kv.get(space)
            except KeyNotFoundError:
                return None
            if not entry.value:
                return None
            rec = SpaceRecord.model_validate_json(entry.value)
            if rec.status == "deleting":
                return rec
            deleting = rec.model_copy(update={"status": "deleting"})
            try:
                await self.kv.update(
                    space, deleting.model_dump_json().encode(), last=entry.revision
                )
            except KeyWrongLastSequenceError:
                continue  # changed under us: read again
            self._cache[space] = deleting
            return deleting

    async def remove(self, space: str) -> None:
        """Delete the space's WAL stream and erase its snapshot, then its record: the
        id is free again."""
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self._js.delete_stream(stream_name(space))
        snapshots = SnapshotBucket(self._js, self._replicas)
        await snapshots.open()
        await snapshots.erase(space)
        await self.kv.delete(space)
        self._cache.pop(space, None)

    async def ensure_stream(self, space: str, max_bytes: int = 0) -> None:
        try:
            await self._js.add_stream(config=space_stream_config(space, self._replicas, max_bytes))
        except nats.js.errors.BadRequestError as exc:
            # another creator's stream with another limit: the registry's record
            # (written by whoever wins) decides, and the settings are compared there
            if "already in use" not in str(exc):
                raise

    async def create_or_get(
        self,
        space: str,
        *,
        dim: int | None = None,
        metric: Metric | None = None,
        embedder: str | None = None,
        links: LinkSettings | None = None,
        decay: DecaySettings | None = None,
        consolidation: ConsolidationSettings | None = None,
        max_memories: int | None = None,
        max_bytes: int | None = None,
        default_dim: int = 384,
        default_embedder: str = "hash-ngram-v1",
        default_max_memories: int = 0,
        default_max_bytes: int = 0,
        max_spaces: int | None = None,
    ) -> tuple[SpaceRecord, bool]:
        """Return ``(record, created)``. Settings left ``None`` take the defaults for a
        new space and match anything for an existing one; raise
        :class:`SpaceConflict` if the space exists with other settings."""
        validate_space_id(space)
        existing = self.cached(space) or await self.get(space)
        if existing is None:
            if max_spaces is not None and len(self._cache) >= max_spaces:
                raise SpaceLimitReached(
                    f"the registry holds {len(self._cache)} spaces, the limit "
                    f"(ENGRAM_MAX_SPACES) is {max_spaces}"
                )
            limit = default_max_bytes if max_bytes is None else max_bytes
            await self.ensure_stream(space, limit)
            rec = SpaceRecord(
                id=space,
                dim=dim or default_dim,
                metric=metric or "cos",
                embedder=embedder or default_embedder,
                created_at=datetime.now(UTC),
                links=links or LinkSettings(),
                decay=decay or DecaySettings(),
                consolidation=consolidation or ConsolidationSettings(),
                max_memories=default_max_memories if max_memories is None else max_memories,
                max_bytes=limit,
            )
            try:
                await self.kv.create(space, rec.model_dump_json().encode())
            except KeyWrongLastSequenceError:
                existing = await self.get(space)
                assert existing is not None
            else:
                self._cache[space] = rec
                return rec, True
        asked = {
            "dim": dim,
            "metric": metric,
            "embedder": embedder,
            "links": links,
            "decay": decay,
            "consolidation": consolidation,
            "max_memories": max_memories,
            "max_bytes": max_bytes,
        }
        differ = [k for k, v in asked.items() if v is not None and getattr(existing, k) != v]
        if differ:

            def shown(value: Any) -> str:
                if isinstance(value, BaseModel):
                    return value.model_dump_json()
                return str(value)

            raise SpaceConflict(
                f"space {space!r} exists with "
                + ", ".join(f"{k}={shown(getattr(existing, k))}" for k in differ)
                + "; asked for "
                + ", ".join(f"{k}={shown(asked[k])}" for k in differ)
            )
        return existing, False


async def cluster_state(js: JetStreamContext) -> NatsClusterState | None:
    """The JetStream cluster's health, from the registry's own stream: its
    replicas are the cluster's nodes (``None`` on a single server)."""
    info = await js.stream_info(f"KV_{REGISTRY_BUCKET}")
    cluster = info.cluster
    if cluster is None or not cluster.replicas:
        return None
    peers = cluster.replicas or []
    offline = sorted(str(p.name) for p in peers if p.offline or not p.current)
    nodes = sorted({*(str(p.name) for p in peers), *([cluster.leader] if cluster.leader else [])})
    return NatsClusterState(
        nodes=nodes, leader=cluster.leader, offline=offline, degraded=bool(offline)
    )
