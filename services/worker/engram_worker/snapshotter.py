"""Snapshots of one hosted space: recover from the newest at start, write one
every ``snapshot_every`` commands, ``snapshot_interval`` seconds after a change,
``snapshot_forget_delay`` seconds after a forget that touched the newest
snapshot, and on a graceful stop.

Recovery restores the newest snapshot if it is whole and belongs to this
incarnation of the space; anything wrong with it means a full replay, said in
the log and in :attr:`Snapshotter.recovery`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from engram_contract.messages import SpaceRecord
from engram_worker.core.index import VectorIndex
from engram_worker.core.persistence import capture, restore
from engram_worker.core.snapshot import Column, SnapshotHeader, SnapshotInvalid, decode, encode
from engram_worker.core.state import SpaceState
from engram_worker.snapshots import SnapshotStore, SnapshotUnreadable

if TYPE_CHECKING:
    from engram_worker.host import SpaceHost

log = logging.getLogger(__name__)
#: a space changed only by reinforce commands is snapshotted this many intervals apart
REINFORCE_ONLY_INTERVALS = 10


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
    records: dict[str, Column],
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


class Snapshotter:
    """The snapshot duties of one :class:`SpaceHost` and where they stand."""

    def __init__(self, host: SpaceHost, store: SnapshotStore | None) -> None:
        self._host = host
        self._store = store
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.recovery = "not started"
        self.snapshot_seq = 0  # position of the newest snapshot written or restored
        self.snapshot_at: float | None = None  # its wall-clock time
        self.captured_seq = 0  # position of the snapshot being written (>= snapshot_seq)
        self._last_snapshot = time.monotonic()
        self.since_snapshot = 0  # commands folded since the last capture
        self.content_seq = 0  # the last folded command that was not a reinforce
        self.forget_due: float | None = None  # when a forget first touched a snapshot
        self.erase_left: list[int] = []  # what the restored snapshot says is still to erase

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def touched(self, seq: int) -> None:
        """A forget or replacement erases the WAL message at ``seq``."""
        if seq <= self.captured_seq and self.forget_due is None:
            self.forget_due = time.monotonic()  # the newest snapshot holds it

    async def recover(self, stream_last: int) -> None:
        """Restore the newest snapshot if it is usable; otherwise leave the state
        empty (the WAL is replayed from seq 1) and say why."""
        assert self._store is not None
        started = time.perf_counter()
        try:
            loaded = await self._store.load(self._host.space)
        except SnapshotUnreadable as exc:
            self._replay_instead(f"snapshot unreadable ({exc})")
            return
        except Exception as exc:
            self._replay_instead(f"snapshot store failed ({exc!r})")
            return
        if loaded is None:
            self.recovery = "no snapshot: replayed the WAL"
            log.info("space %s: no snapshot; replaying the WAL from seq 1", self._host.space)
            return
        _, data = loaded
        try:
            snap = await asyncio.to_thread(decode, data)
            problem = self._unusable(snap.header, stream_last)
            if problem:
                raise SnapshotInvalid(problem)
            index = await asyncio.to_thread(
                VectorIndex.from_bytes, snap.index, self._host.record.dim, self._host.record.metric
            )
            state = self._host.fresh_state()
            restore(
                state,
                snap.records,
                index,
                applied_seq=snap.header.applied_seq,
                next_key=snap.header.next_key,
                rejected=snap.header.rejected,
                format=snap.header.format,
            )
        except (SnapshotInvalid, ValueError) as exc:
            self._replay_instead(f"snapshot not usable ({exc})")
            return
        finally:
            del data
        header = snap.header
        self._host.state = state
        self.snapshot_seq = header.applied_seq
        self.snapshot_at = header.written_at.timestamp()
        self.erase_left = list(header.erase_pending)
        took = time.perf_counter() - started
        self.recovery = (
            f"restored from snapshot at seq {header.applied_seq} in {took:.2f}s "
            f"(written by {header.origin})"
        )
        log.info(
            "space %s: restored %d memories at seq %d from its snapshot in %.2fs; "
            "tailing %d newer messages",
            self._host.space,
            len(state),
            header.applied_seq,
            took,
            max(0, stream_last - header.applied_seq),
        )

    def _replay_instead(self, why: str) -> None:
        self._host.state = self._host.fresh_state()
        self.recovery = f"{why}: replayed the WAL"
        log.warning("space %s: %s; replaying the WAL from seq 1", self._host.space, why)

    def _unusable(self, header: SnapshotHeader, stream_last: int) -> str | None:
        rec = self._host.record
        if header.space != rec.id or header.space_created_at != rec.created_at:
            return "it belongs to an earlier space with this id"
        if (header.dim, header.metric, header.embedder) != (rec.dim, rec.metric, rec.embedder):
            return "its dim, metric or embedder differ from the space's"
        if header.index_dtype != self._host.settings.index_dtype:
            return (
                f"its index holds {header.index_dtype}; this worker is set to "
                f"{self._host.settings.index_dtype}"
            )
        if header.applied_seq > stream_last:
            return f"it is at seq {header.applied_seq}, beyond the stream's last ({stream_last})"
        return None

    def changed(self) -> bool:
        return self._host.state.applied_seq > self.captured_seq or self._host.erase_queue.failed

    def due(self, now: float | None = None) -> bool:
        if not self.changed():
            return False
        now = time.monotonic() if now is None else now
        s = self._host.settings
        # only recall bookkeeping (reinforce commands) since the last capture: cheap
        # to fold again after a crash, and a snapshot of a big space holds up its
        # queries for a moment, so it waits ten intervals (a graceful stop writes it)
        interval = s.snapshot_interval
        if self.content_seq <= self.captured_seq:
            interval *= REINFORCE_ONLY_INTERVALS
        return (
            self.since_snapshot >= s.snapshot_every
            or now - self._last_snapshot >= interval
            or (self.forget_due is not None and now - self.forget_due >= s.snapshot_forget_delay)
        )

    async def _loop(self) -> None:
        tick = min(
            1.0, self._host.settings.snapshot_interval, self._host.settings.snapshot_forget_delay
        )
        while True:
            await asyncio.sleep(max(tick, 0.05))
            if self._host.retired or not self._host.primary or not self.due():
                continue
            try:
                await self.snapshot()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("space %s: snapshot failed; retrying later", self._host.space)
                self._last_snapshot = time.monotonic()  # back off one interval

    async def snapshot(self, origin: str | None = None) -> SnapshotHeader:
        """Write a snapshot of the applied state now and erase the previous one."""
        if self._store is None:
            raise RuntimeError("this host has no snapshot store")
        async with self._lock:
            await self._host.erase_queue.retry_failed()
            forget_mark = self.forget_due
            async with self._host.indexer.lock:
                batch = self._host.state.indexing.take()
                if batch is not None:
                    await self._host.indexer.run(batch)
                # from here to the capture nothing awaits: records and index agree
                self._host.state.flush()
                records = capture(self._host.state)
                seq, since = self._host.state.applied_seq, self.since_snapshot
                header = snapshot_header(
                    self._host.state,
                    self._host.record,
                    self._host.settings.index_dtype,
                    origin or f"worker {self._host.settings.worker_id}",
                    self._host.erase_queue.pending(),
                )
                self.captured_seq, self.forget_due, self.since_snapshot = seq, None, 0
                index = self._host.state.index
                await asyncio.to_thread(index.scrub)  # no forgotten vector in the bytes
                index_bytes = await asyncio.to_thread(index.to_bytes)
            try:
                # a message being folded at capture may still be erasing what it replaced
                await self._host.wait_applied(seq, self._host.settings.apply_wait_timeout)
                await write_snapshot(self._store, header, records, index_bytes)
                del index_bytes, records
            except BaseException:
                self.captured_seq = self.snapshot_seq  # not written: due again
                self.since_snapshot += since
                if forget_mark is not None:
                    self.forget_due = min(forget_mark, self.forget_due or forget_mark)
                raise
            if self._host.retired:  # deleted while we wrote: leave nothing behind
                await self._store.erase(self._host.space)
                return header
            self.snapshot_seq, self.snapshot_at = seq, header.written_at.timestamp()
            self._last_snapshot = time.monotonic()
            log.info(
                "space %s: snapshot at seq %d (%d memories)", self._host.space, seq, header.memories
            )
            return header
