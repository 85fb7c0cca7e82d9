"""Adapters around the pure core: one ``SpaceHost`` per hosted space.

A host tails its space's WAL through an ordered push consumer with a callback
(nats-py runs one callback at a time per subscription, so the fold sees the
stream in order), folds each message into its :class:`SpaceState`, publishes
the resulting event, and inserts vectors into the index in batches: when the
batch is full or the consumer has nothing pending. Index inserts run in a
thread under the host's lock; searches take the same lock, so the usearch
index is only ever touched by one actor at a time.

Recovery: :meth:`SpaceHost.start` restores the newest snapshot (if it is whole
and belongs to this incarnation of the space) and tails the WAL from the
snapshot's position + 1; anything wrong with the snapshot means a full replay,
said in the log and in :attr:`SpaceHost.recovery`. Snapshots are written every
``snapshot_every`` commands, ``snapshot_interval`` seconds after a change,
``snapshot_forget_delay`` seconds after a forget that touched the newest
snapshot, and on a graceful stop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from engram_contract.embedders import get_embedder
from engram_contract.ids import new_id
from engram_contract.messages import (
    MAX_BATCH,
    ConsolidateCommand,
    ConsolidatedGroup,
    ReinforceCommand,
    SpaceRecord,
)
from engram_contract.settings import WorkerSettings
from engram_contract.subjects import (
    command_subject,
    command_verb,
    event_subject,
    stream_name,
    wal_subjects,
)
from engram_nats.consumers import delete_msg
from engram_worker.core.consolidation import consolidation_groups
from engram_worker.core.events import (
    Activated,
    Consolidated,
    Event,
    Forgotten,
    Linked,
    Rejected,
    Stored,
)
from engram_worker.core.index import VectorIndex
from engram_worker.core.indexing import FlushBatch
from engram_worker.core.persistence import capture, restore
from engram_worker.core.snapshot import SnapshotHeader, SnapshotInvalid, decode, encode
from engram_worker.core.state import SpaceState
from engram_worker.metrics import WorkerMetrics
from engram_worker.positions import position, stored_at
from engram_worker.snapshots import SnapshotStore, SnapshotUnreadable
from engram_worker.wal_consumer import NotCaughtUp

log = logging.getLogger(__name__)
T = TypeVar("T")
#: a space changed only by reinforce commands is snapshotted this many intervals apart
REINFORCE_ONLY_INTERVALS = 10
#: WAL message deletes (forgets, replacements) in flight at once per space, and
#: most queued before the fold waits for them
ERASE_WINDOW = 64
MAX_ERASE_QUEUE = 100_000


def snapshot_header(
    state: SpaceState,
    record: SpaceRecord,
    index_dtype: str,
    origin: str,
    erase_pending: list[int] | None = None,
) -> SnapshotHeader:
    """The header of a snapshot of ``state`` as it is now."""
    return SnapshotHeader(
        space=record.id,
        space_created_at=record.created_at,
        applied_seq=state.applied_seq,
        next_key=state.next_key,
        rejected=state.rejected,
        memories=len(state),
        dim=record.dim,
        metric=record.metric,
        index_dtype=index_dtype,
        embedder=record.embedder,
        written_at=datetime.now(UTC),
        origin=origin,
        erase_pending=list(erase_pending or []),
    )


async def write_snapshot(
    store: SnapshotStore,
    header: SnapshotHeader,
    records: dict[str, list[Any]],
    index_bytes: bytearray,
) -> int:
    """Encode and store a snapshot (replacing and erasing the previous one); returns
    its size in bytes."""
    parts = await asyncio.to_thread(encode, header, records, index_bytes)
    info = await store.save(
        header.space,
        parts,
        headers={
            "Engram-Space": header.space,
            "Engram-Applied-Seq": str(header.applied_seq),
            "Engram-Memories": str(header.memories),
            "Engram-Origin": header.origin,
        },
        description=f"Engram snapshot of space {header.space} at seq {header.applied_seq}",
    )
    return int(info.size or 0)


class SpaceHost:
    """Hosts one space: WAL consumer, state, event publisher, waiters, snapshots."""

    def __init__(
        self,
        record: SpaceRecord,
        nc: Client,
        js: JetStreamContext,
        settings: WorkerSettings,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.record = record
        self.space = record.id
        self._nc = nc
        self._js = js
        self._settings = settings
        self._snapshots = snapshots
        self.state = self._fresh_state()
        self._lock = asyncio.Lock()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._sub: JetStreamContext.PushSubscription | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._snap_lock = asyncio.Lock()
        self._folded = 0
        self._done_seq = 0  # every message up to here is folded and announced
        #: the stream's last seq as last seen (at start, then from each message's
        #: pending count): ``stream_last - applied_seq`` is the WAL lag, no request needed
        self.stream_last = 0
        self.progress_at = time.monotonic()  # when the fold last moved (stuck detection)
        self.counts: dict[tuple[str, str], int] = {}  # (verb, outcome) → folded
        self.rejections: list[str] = []  # reasons, since the last drain_counts
        self.retired = False  # deleted (or re-created): write no more snapshots
        # snapshots
        self.recovery = "not started"
        self.snapshot_seq = 0  # position of the newest snapshot written or restored
        self.snapshot_at: float | None = None  # its wall-clock time
        self._captured_seq = 0  # position of the snapshot being written (>= snapshot_seq)
        self._last_snapshot = time.monotonic()
        self._since_snapshot = 0  # commands folded since the last capture
        self._content_seq = 0  # the last folded command that was not a reinforce
        self._forget_due: float | None = None  # when a forget first touched a snapshot
        self._erase_retry: list[int] = []
        #: WAL seqs to erase, oldest first, and the ones being erased: a background
        #: task deletes them (JetStream's secure delete is ~200/s here, so awaiting
        #: each in the fold held a bulk forget, and every read after it, to that)
        self._erase_queue: collections.deque[int] = collections.deque()
        self._erasing: set[int] = set()
        self._erase_wake = asyncio.Event()
        self._erase_room = asyncio.Event()
        self._eraser_task: asyncio.Task[None] | None = None
        # reinforcement: ids recall returned, written as one command per short while
        self._reinforce: dict[str, None] = {}
        self._reinforce_task: asyncio.Task[None] | None = None
        self._consolidate_task: asyncio.Task[None] | None = None

    def _fresh_state(self) -> SpaceState:
        rec = self.record
        return SpaceState(
            rec, get_embedder(rec.embedder, rec.dim), index_dtype=self._settings.index_dtype
        )

    async def start(self, *, use_snapshot: bool = True) -> None:
        """Restore the snapshot (unless told not to), then subscribe from its position + 1
        and fold everything after it."""
        info = await self._js.stream_info(stream_name(self.space))
        last = info.state.last_seq
        self.stream_last = last
        if use_snapshot and self._snapshots is not None:
            await self._recover(last)
        else:
            self.recovery = "replayed the WAL (snapshot not used)"
        self._done_seq = self._captured_seq = self.state.applied_seq
        # what the snapshot says is still to erase goes first
        self._erase_queue.extend(self._erase_retry)
        self._erase_retry = []
        self._eraser_task = asyncio.create_task(self._eraser())
        self._erase_wake.set()
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
            idle_heartbeat=self._settings.wal_heartbeat,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        log.info("space %s: hosting from seq %d (stream last seq %d)", self.space, start, last)
        if self._snapshots is not None:
            self._snapshot_task = asyncio.create_task(self._snapshot_loop())
        if self.record.consolidation.interval_s > 0:
            self._consolidate_task = asyncio.create_task(self._consolidate_loop())

    async def stop(self, *, snapshot: bool = False) -> None:
        """Stop tailing; with ``snapshot``, first write one if anything changed since
        the last (a graceful shutdown)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self._reinforce_task is not None and not self._reinforce_task.done():
            with contextlib.suppress(Exception):  # write what recall returned so far
                await asyncio.wait_for(asyncio.shield(self._reinforce_task), 2.0)
        for task in (self._snapshot_task, self._flush_task, self._consolidate_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        # a few seconds for the erase queue; a snapshot lists what is left
        await self.erased(timeout=5.0)
        if self._eraser_task is not None:
            self._eraser_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._eraser_task
        if snapshot and self._snapshot_changed() and not self.retired:
            if self._done_seq < self.state.applied_seq:
                log.warning(
                    "space %s: stopped while folding seq %d; no snapshot on the way out",
                    self.space,
                    self.state.applied_seq,
                )
            else:
                try:
                    await self.snapshot()
                except Exception:
                    log.exception("space %s: snapshot on shutdown failed", self.space)
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    async def _on_msg(self, msg: Msg) -> None:
        try:
            seq, stamp, after = position(msg.reply)
            verb = command_verb(msg.subject)
            if verb == "consolidate":  # reads the members' vectors: not during an insert
                async with self._lock:
                    event = self.state.apply_message(verb, msg.data, seq, stored_at(stamp))
            else:
                event = self.state.apply_message(verb, msg.data, seq, stored_at(stamp))
            # Announce what was written recently; a replay of old history stays quiet.
            # Recent includes the last messages before a crash, so events are
            # at-least-once for them.
            age = time.time() - stamp / 1e9
            # nothing pending after this message: the stream ends here (erased
            # messages never count), else at least this far
            self.stream_last = seq if after == 0 else max(self.stream_last, seq + after)
            if event is not None:
                # plain ints here (the fold's hot path); the worker adds them to
                # the Prometheus counters when it refreshes its metrics
                key = (verb, "rejected" if type(event) is Rejected else "applied")
                self.counts[key] = self.counts.get(key, 0) + 1
                if type(event) is Rejected:
                    self.rejections.append(event.reason)
                self._since_snapshot += 1
                if not isinstance(event, Activated):
                    self._content_seq = event.seq
                await self._erase(event)
                if age <= self._settings.event_window:
                    await self._publish(event)
            pending = self.state.pending
            if pending >= 4 * self._settings.index_batch:
                await self.flush()  # back-pressure: the index is the ingest ceiling
            elif pending >= self._settings.index_batch or after == 0:
                self._kick_flush()
            self._folded += 1
            if self._folded % 256 == 0:
                # nats-py hands queued messages to this callback without yielding:
                # give queries and the flush task a turn
                await asyncio.sleep(0)
        except Exception:  # the fold must never stall the space
            log.exception("space %s: failed on a WAL message", self.space)
        finally:
            self._done_seq = self.state.applied_seq
            self.progress_at = time.monotonic()
            self._wake(self._done_seq)

    def drain_counts(self, metrics: WorkerMetrics) -> None:
        """Add the commands folded (and rejections) since the last call to the
        worker's counters."""
        counts, self.counts = self.counts, {}
        rejections, self.rejections = self.rejections, []
        for (verb, outcome), n in counts.items():
            metrics.command(self.space, verb, outcome, n)
        for reason in rejections:
            metrics.rejection(self.space, reason)

    @property
    def wal_lag(self) -> int:
        """WAL messages not folded yet, as far as this host has seen the stream."""
        return max(0, self.stream_last - self.state.applied_seq)

    def index_memory_bytes(self) -> int:
        """Memory held by the space's usearch index, as of its last insert."""
        return self.state.index.memory_bytes

    async def _publish(self, event: Event) -> None:
        if isinstance(event, Stored):
            subject = event_subject(self.space, "stored")
        elif isinstance(event, Forgotten):
            subject = event_subject(self.space, "forgotten")
        elif isinstance(event, Linked):
            subject = event_subject(self.space, "linked")
        elif isinstance(event, Activated):
            subject = event_subject(self.space, "activated")
        elif isinstance(event, Consolidated):
            subject = event_subject(self.space, "consolidated")
        else:
            subject = event_subject(self.space, "rejected")
            log.warning("space %s: rejected seq %d: %s", self.space, event.seq, event.reason)
        await self._nc.publish(subject, event.message(self.space).model_dump_json().encode())

    async def _erase(self, event: Event) -> None:
        """Queue the erase of the WAL message of a forgotten or replaced version
        (JetStream's message delete overwrites the bytes on disk). Idempotent: a
        replay erases again, and an already erased message is simply not found."""
        if isinstance(event, Stored | Consolidated):
            seq = event.replaced_seq
        elif isinstance(event, Forgotten):
            seq = event.erased_seq
        else:
            return
        if seq is None:
            return
        if seq <= self._captured_seq and self._forget_due is None:
            self._forget_due = time.monotonic()  # the newest snapshot holds it
        self._erase_queue.append(seq)
        self._erase_wake.set()
        while len(self._erase_queue) > MAX_ERASE_QUEUE:  # bounded: the fold waits
            self._erase_room.clear()
            await self._erase_room.wait()

    async def _eraser(self) -> None:
        """Erase queued WAL messages, ``ERASE_WINDOW`` at a time; failures go to
        ``_erase_retry`` (retried before each snapshot, and listed in it)."""

        async def erase(seq: int) -> None:
            try:
                if not await self._erase_seq(seq):
                    self._erase_retry.append(seq)
            finally:
                self._erasing.discard(seq)

        while True:
            await self._erase_wake.wait()
            self._erase_wake.clear()
            while self._erase_queue:
                batch = [
                    self._erase_queue.popleft()
                    for _ in range(min(ERASE_WINDOW, len(self._erase_queue)))
                ]
                self._erasing.update(batch)
                await asyncio.gather(*(erase(seq) for seq in batch))
                self._erase_room.set()

    async def erased(self, timeout: float) -> bool:
        """Wait until nothing is queued or being erased (``False`` on timeout)."""
        deadline = time.monotonic() + timeout
        while self._erase_queue or self._erasing:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    @property
    def erase_backlog(self) -> int:
        """How many WAL messages are still to erase (queued, in flight, failed)."""
        return len(self._erase_queue) + len(self._erasing) + len(self._erase_retry)

    def erases_pending(self) -> list[int]:
        """Seqs still to erase: failed, queued and in flight. A snapshot lists them,
        so a worker starting from it erases them if this one does not get to."""
        return sorted({*self._erase_retry, *self._erase_queue, *self._erasing})

    async def _erase_seq(self, seq: int) -> bool:
        try:
            # already gone is fine: erased before (a replay, or another replica)
            await delete_msg(self._js, stream_name(self.space), seq)
        except Exception as exc:
            log.error("space %s: could not erase seq %d (will retry): %r", self.space, seq, exc)
            return False
        return True

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
                batch = self.state.indexing.take(self._settings.index_batch)
                if batch is not None:
                    await self._run_flush(batch)

    async def _run_flush(self, batch: FlushBatch) -> None:
        """Insert a batch in a thread (call with the lock held). Cancel-safe: the
        caller keeps the lock until the thread is done with the index."""
        insert = asyncio.ensure_future(asyncio.to_thread(self.state.indexing.run, batch))
        try:
            await asyncio.shield(insert)
        except asyncio.CancelledError:
            await insert
            raise

    def _wake(self, applied: int) -> None:
        while self._waiters and self._waiters[0][0] <= applied:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    async def wait_applied(self, seq: int, timeout: float) -> None:
        """Return once ``seq`` is applied (what it erases may still be queued for
        erasing: :meth:`erased`); raise :class:`NotCaughtUp` after ``timeout``."""
        if self._done_seq >= seq:
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
            batch = self.state.indexing.take()
            if batch is not None:
                await self._run_flush(batch)
            # messages folded while the thread ran are inserted inline by fn's flush
            return fn(self.state)

    # -- reinforcement and consolidation -------------------------------------

    def reinforce(self, memory_ids: list[str]) -> None:
        """Count a recall for these memories: written to the WAL as one ``reinforce``
        command per ``reinforce_delay`` (so access counts survive restarts and every
        replica agrees), folded like any command."""
        if not memory_ids or self.retired:
            return
        self._reinforce.update(dict.fromkeys(memory_ids))
        if self._reinforce_task is None or self._reinforce_task.done():
            self._reinforce_task = asyncio.create_task(self._write_reinforcements())

    async def _write_reinforcements(self) -> None:
        while self._reinforce:
            # wait first: the recalls of the next moment join this command
            await asyncio.sleep(self._settings.reinforce_delay)
            ids = list(self._reinforce)[:MAX_BATCH]
            for memory_id in ids:
                del self._reinforce[memory_id]
            command = ReinforceCommand(command_id=new_id(), memory_ids=ids)
            try:
                await self._write(command_subject(self.space, "reinforce"), command)
            except Exception as exc:  # a recall is never failed by its bookkeeping
                log.warning(
                    "space %s: could not write a reinforce command (%d memories): %r",
                    self.space,
                    len(ids),
                    exc,
                )

    async def _write(self, subject: str, command: ReinforceCommand | ConsolidateCommand) -> int:
        ack = await self._js.publish(
            subject,
            command.model_dump_json().encode(),
            timeout=10.0,
            stream=stream_name(self.space),
            headers={"Nats-Msg-Id": command.command_id},
        )
        return int(ack.seq)

    async def consolidate(
        self, *, dry_run: bool = False
    ) -> tuple[list[ConsolidatedGroup], int | None]:
        """Find groups of densely linked episodic memories and write a ``consolidate``
        command for each (the fold makes the semantic memories). Returns the groups
        and the last command's stream seq."""
        settings = self.record.consolidation
        # every memory is looked at each time: a group may become dense long after
        # its members were stored (links added later, a semantic memory forgotten)
        groups, planned_at = await self.with_index(
            lambda st: (consolidation_groups(st, settings), st.applied_seq)
        )
        found = [ConsolidatedGroup(memory_id=mid, members=members) for mid, members in groups]
        if dry_run:
            return found, None
        last: int | None = None
        for group in found:
            command = ConsolidateCommand(
                # the same group planned at the same position gets the same command
                # id: JetStream drops a second worker's identical decision as a
                # duplicate (the position makes a later, new decision a new command)
                command_id=f"consolidate:{group.memory_id}:{planned_at}",
                memory_id=group.memory_id,
                members=group.members,
            )
            last = await self._write(command_subject(self.space, "consolidate"), command)
        if found:
            log.info("space %s: consolidated %d groups", self.space, len(found))
        return found, last

    async def _consolidate_loop(self) -> None:
        every = self.record.consolidation.interval_s
        while True:
            await asyncio.sleep(every)
            try:
                await self.consolidate()
            except Exception:
                log.exception("space %s: scheduled consolidation failed", self.space)

    # -- snapshots -----------------------------------------------------------

    async def _recover(self, stream_last: int) -> None:
        """Restore the newest snapshot if it is usable; otherwise leave the state
        empty (the WAL is replayed from seq 1) and say why."""
        assert self._snapshots is not None
        started = time.perf_counter()
        try:
            loaded = await self._snapshots.load(self.space)
        except SnapshotUnreadable as exc:
            self._replay_instead(f"snapshot unreadable ({exc})")
            return
        except Exception as exc:
            self._replay_instead(f"snapshot store failed ({exc!r})")
            return
        if loaded is None:
            self.recovery = "no snapshot: replayed the WAL"
            log.info("space %s: no snapshot; replaying the WAL from seq 1", self.space)
            return
        _, data = loaded
        try:
            snap = await asyncio.to_thread(decode, data)
            problem = self._unusable(snap.header, stream_last)
            if problem:
                raise SnapshotInvalid(problem)
            index = await asyncio.to_thread(
                VectorIndex.from_bytes, snap.index, self.record.dim, self.record.metric
            )
            state = self._fresh_state()
            restore(
                state,
                snap.records,
                index,
                applied_seq=snap.header.applied_seq,
                next_key=snap.header.next_key,
                rejected=snap.header.rejected,
            )
        except (SnapshotInvalid, ValueError) as exc:
            self._replay_instead(f"snapshot not usable ({exc})")
            return
        finally:
            del data
        header = snap.header
        self.state = state
        self.snapshot_seq = header.applied_seq
        self.snapshot_at = header.written_at.timestamp()
        self._erase_retry = list(header.erase_pending)
        took = time.perf_counter() - started
        self.recovery = (
            f"restored from snapshot at seq {header.applied_seq} in {took:.2f}s "
            f"(written by {header.origin})"
        )
        log.info(
            "space %s: restored %d memories at seq %d from its snapshot in %.2fs; "
            "tailing %d newer messages",
            self.space,
            len(state),
            header.applied_seq,
            took,
            max(0, stream_last - header.applied_seq),
        )

    def _replay_instead(self, why: str) -> None:
        self.state = self._fresh_state()
        self.recovery = f"{why}: replayed the WAL"
        log.warning("space %s: %s; replaying the WAL from seq 1", self.space, why)

    def _unusable(self, header: SnapshotHeader, stream_last: int) -> str | None:
        rec = self.record
        if header.space != rec.id or header.space_created_at != rec.created_at:
            return "it belongs to an earlier space with this id"
        if (header.dim, header.metric, header.embedder) != (rec.dim, rec.metric, rec.embedder):
            return "its dim, metric or embedder differ from the space's"
        if header.index_dtype != self._settings.index_dtype:
            return (
                f"its index holds {header.index_dtype}; this worker is set to "
                f"{self._settings.index_dtype}"
            )
        if header.applied_seq > stream_last:
            return f"it is at seq {header.applied_seq}, beyond the stream's last ({stream_last})"
        return None

    def _snapshot_changed(self) -> bool:
        return self.state.applied_seq > self._captured_seq or bool(self._erase_retry)

    def snapshot_due(self, now: float | None = None) -> bool:
        if not self._snapshot_changed():
            return False
        now = time.monotonic() if now is None else now
        s = self._settings
        # only recall bookkeeping (reinforce commands) since the last capture: cheap
        # to fold again after a crash, and a snapshot of a big space holds up its
        # queries for a moment, so it waits ten intervals (a graceful stop writes it)
        interval = s.snapshot_interval
        if self._content_seq <= self._captured_seq:
            interval *= REINFORCE_ONLY_INTERVALS
        return (
            self._since_snapshot >= s.snapshot_every
            or now - self._last_snapshot >= interval
            or (self._forget_due is not None and now - self._forget_due >= s.snapshot_forget_delay)
        )

    async def _snapshot_loop(self) -> None:
        tick = min(1.0, self._settings.snapshot_interval, self._settings.snapshot_forget_delay)
        while True:
            await asyncio.sleep(max(tick, 0.05))
            if self.retired or not self.snapshot_due():
                continue
            try:
                await self.snapshot()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("space %s: snapshot failed; retrying later", self.space)
                self._last_snapshot = time.monotonic()  # back off one interval

    async def snapshot(self, origin: str | None = None) -> SnapshotHeader:
        """Write a snapshot of the applied state now and erase the previous one."""
        if self._snapshots is None:
            raise RuntimeError("this host has no snapshot store")
        async with self._snap_lock:
            for seq in list(self._erase_retry):
                if await self._erase_seq(seq):
                    self._erase_retry.remove(seq)
            forget_mark = self._forget_due
            async with self._lock:
                batch = self.state.indexing.take()
                if batch is not None:
                    await self._run_flush(batch)
                # from here to the capture nothing awaits: records and index agree
                self.state.flush()
                records = capture(self.state)
                seq, since = self.state.applied_seq, self._since_snapshot
                header = snapshot_header(
                    self.state,
                    self.record,
                    self._settings.index_dtype,
                    origin or f"worker {self._settings.worker_id}",
                    self.erases_pending(),
                )
                self._captured_seq, self._forget_due, self._since_snapshot = seq, None, 0
                index = self.state.index
                await asyncio.to_thread(index.scrub)  # no forgotten vector in the bytes
                index_bytes = await asyncio.to_thread(index.to_bytes)
            try:
                # a message being folded at capture may still be erasing what it replaced
                await self.wait_applied(seq, self._settings.apply_wait_timeout)
                await write_snapshot(self._snapshots, header, records, index_bytes)
                del index_bytes, records
            except BaseException:
                self._captured_seq = self.snapshot_seq  # not written: due again
                self._since_snapshot += since
                if forget_mark is not None:
                    self._forget_due = min(forget_mark, self._forget_due or forget_mark)
                raise
            if self.retired:  # deleted while we wrote: leave nothing behind
                await self._snapshots.erase(self.space)
                return header
            self.snapshot_seq, self.snapshot_at = seq, header.written_at.timestamp()
            self._last_snapshot = time.monotonic()
            log.info("space %s: snapshot at seq %d (%d memories)", self.space, seq, header.memories)
            return header
