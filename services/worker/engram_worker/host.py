"""Adapters around the pure core: one ``SpaceHost`` per hosted space.

A host tails its space's WAL through an ordered push consumer with a callback
(nats-py runs one callback at a time per subscription, so the fold sees the
stream in order), folds each message into its :class:`SpaceState`, publishes
the resulting event, and inserts vectors into the index in batches: when the
batch is full or the consumer has nothing pending. Index inserts run in a
thread under the host's lock; searches take the same lock, so the usearch
index is only ever touched by one actor at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from engram_common.embedders import get_embedder
from engram_common.messages import MemoryForgotten, MemoryStored, SpaceRecord
from engram_common.settings import WorkerSettings
from engram_common.subjects import event_subject, split_subject, stream_name, wal_subjects
from engram_worker.core.state import Event, SpaceState

log = logging.getLogger(__name__)
T = TypeVar("T")


class NotCaughtUp(TimeoutError):
    def __init__(self, space: str, applied: int, wanted: int) -> None:
        super().__init__(
            f"space {space!r} has applied up to seq {applied}; seq {wanted} was not applied "
            "in time (the worker is still catching up; retry, or use consistency=eventual)"
        )


class SpaceHost:
    """Hosts one space: WAL consumer, state, event publisher, waiters."""

    def __init__(
        self,
        record: SpaceRecord,
        nc: Client,
        js: JetStreamContext,
        settings: WorkerSettings,
    ) -> None:
        self.record = record
        self.space = record.id
        self._nc = nc
        self._js = js
        self._settings = settings
        self.state = SpaceState(
            record, get_embedder(record.embedder, record.dim), index_dtype=settings.index_dtype
        )
        self._lock = asyncio.Lock()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._sub: JetStreamContext.PushSubscription | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._folded = 0

    async def start(self) -> None:
        """Subscribe from the position + 1 and fold everything after it."""
        info = await self._js.stream_info(stream_name(self.space))
        last = info.state.last_seq
        start = self.state.applied_seq + 1
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
        )
        self._sub = await self._js.subscribe(
            wal_subjects(self.space),
            stream=stream_name(self.space),
            ordered_consumer=True,
            cb=self._on_msg,
            config=config,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        log.info("space %s: hosting from seq %d (stream last seq %d)", self.space, start, last)

    async def stop(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flush_task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    async def _on_msg(self, msg: Msg) -> None:
        try:
            meta = msg.metadata
            seq = meta.sequence.stream
            _, verb = split_subject(msg.subject)
            event = self.state.apply_message(verb, msg.data, seq, meta.timestamp)
            # Announce what was written recently; a replay of old history stays quiet.
            # Recent includes the last messages before a crash, so events are
            # at-least-once for them.
            age = time.time() - meta.timestamp.timestamp()
            if event is not None:
                await self._erase(event)
                if age <= self._settings.event_window:
                    await self._publish(event)
            pending = self.state.pending
            if pending >= 4 * self._settings.index_batch:
                await self.flush()  # back-pressure: the index is the ingest ceiling
            elif pending >= self._settings.index_batch or meta.num_pending == 0:
                self._kick_flush()
            self._folded += 1
            if self._folded % 256 == 0:
                # nats-py hands queued messages to this callback without yielding:
                # give queries and the flush task a turn
                await asyncio.sleep(0)
            self._wake(self.state.applied_seq)
        except Exception:  # the fold must never stall the space
            log.exception("space %s: failed on a WAL message", self.space)

    async def _publish(self, event: Event) -> None:
        if isinstance(event, MemoryStored):
            subject = event_subject(self.space, "stored")
        elif isinstance(event, MemoryForgotten):
            subject = event_subject(self.space, "forgotten")
        else:
            subject = event_subject(self.space, "rejected")
            log.warning("space %s: rejected seq %d: %s", self.space, event.seq, event.reason)
        await self._nc.publish(subject, event.model_dump_json().encode())

    async def _erase(self, event: Event) -> None:
        """Erase the WAL message of a forgotten or replaced version. JetStream's
        message delete overwrites the bytes on disk. Idempotent: a replay erases
        again, and an already erased message is simply not found."""
        if isinstance(event, MemoryStored):
            seq = event.replaced_seq
        elif isinstance(event, MemoryForgotten):
            seq = event.erased_seq
        else:
            return
        if seq is None:
            return
        try:
            await self._js.delete_msg(stream_name(self.space), seq)
        except NotFoundError:
            pass  # erased before (replay, or another replica)
        except Exception as exc:
            log.error("space %s: could not erase seq %d: %r", self.space, seq, exc)

    def _kick_flush(self) -> None:
        """Insert buffered vectors in the background while the fold goes on."""
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            while self.state.pending:
                await self.flush()
        except Exception:
            log.exception("space %s: index insert failed", self.space)

    async def flush(self) -> None:
        """Insert buffered vectors, at most ``index_batch`` per locked step, so a query
        never waits behind one huge insert."""
        while self.state.pending:
            async with self._lock:
                batch = self.state.take_flush(self._settings.index_batch)
                if batch is not None:
                    await asyncio.to_thread(self.state.run_flush, batch)

    def _wake(self, applied: int) -> None:
        while self._waiters and self._waiters[0][0] <= applied:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    async def wait_applied(self, seq: int, timeout: float) -> None:
        """Return once ``seq`` is applied; raise :class:`NotCaughtUp` after ``timeout``."""
        if self.state.applied_seq >= seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._tiebreak), fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise NotCaughtUp(self.space, self.state.applied_seq, seq) from None

    async def stream_last_seq(self) -> int:
        info = await self._js.stream_info(stream_name(self.space))
        return int(info.state.last_seq)

    async def with_index(self, fn: Callable[[SpaceState], T]) -> T:
        """Run ``fn(state)`` with every applied vector indexed, under the index lock."""
        async with self._lock:
            batch = self.state.take_flush()
            if batch is not None:
                await asyncio.to_thread(self.state.run_flush, batch)
            # messages folded while the thread ran are inserted inline by fn's flush
            return fn(self.state)
