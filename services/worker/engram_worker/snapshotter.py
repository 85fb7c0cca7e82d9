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
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from engram_contract.messages import SpaceRecord
from engram_nats.snapshots import meta_subject, object_info
from engram_worker.core.persistence import capture
from engram_worker.core.snapshot import Column, SnapshotHeader, SnapshotInvalid, encode
from engram_worker.core.state import SpaceState
from engram_worker.memory import can_release, release
from engram_worker.snapshot_restore import RestoreSink
from engram_worker.snapshots import SnapshotStore, SnapshotUnreadable

if TYPE_CHECKING:
    from engram_worker.host import SpaceHost

log = logging.getLogger(__name__)
A = TypeVar("A")
B = TypeVar("B")
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


def written_seq(info: api.ObjectInfo | None) -> int | None:
    """The applied seq a snapshot's object info names (its Engram-Applied-Seq)."""
    value = ((info.headers or {}) if info is not None else {}).get("Engram-Applied-Seq")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


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
        self._follow: Any = None  # the subscription to the snapshot's object info

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def follow(self, nc: Client) -> None:
        """Hear of every snapshot of the space written, by any host (the object
        info each write publishes): after a handover the previous primary's last
        snapshot is newer than what this host restored, and both status and the
        forget bookkeeping (:meth:`touched`) must count from it."""
        self._follow = await nc.subscribe(meta_subject(self._host.space), cb=self._on_written)

    async def _on_written(self, msg: Msg) -> None:
        info = object_info(msg.data)
        seq = written_seq(info)
        if info is None or seq is None or seq <= self.snapshot_seq:
            return
        self.snapshot_seq = seq
        with contextlib.suppress(TypeError, ValueError):
            self.snapshot_at = datetime.fromisoformat(str(info.mtime)).timestamp()
        # a forget of anything at or before it must replace it (see touched())
        self.captured_seq = max(self.captured_seq, seq)

    async def stop(self) -> None:
        if self._follow is not None:
            with contextlib.suppress(Exception):
                await self._follow.unsubscribe()
            self._follow = None
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
        empty (the WAL is replayed from seq 1) and say why. The snapshot is
        restored as its chunks arrive (:mod:`engram_worker.snapshot_restore`)."""
        assert self._store is not None
        host = self._host
        started = time.perf_counter()
        fresh = host.fresh_state()

        def sink(info: api.ObjectInfo) -> RestoreSink:
            return RestoreSink(info, lambda h: self._unusable(h, stream_last), fresh, started)

        try:
            got = await self._store.read(host.space, sink)
        except SnapshotUnreadable as exc:
            self._replay_instead(f"snapshot unreadable ({exc})")
            return
        except (SnapshotInvalid, ValueError) as exc:
            self._replay_instead(f"snapshot not usable ({exc})")
            return
        except Exception as exc:
            self._replay_instead(f"snapshot store failed ({exc!r})")
            return
        if got is None:
            self.recovery = "no snapshot: replayed the WAL"
            log.info("space %s: no snapshot; replaying the WAL from seq 1", host.space)
            return
        restored = got[1]
        header, state = restored.header, restored.state
        assert header is not None and state is not None
        host.state = state
        self.snapshot_seq = header.applied_seq
        self.snapshot_at = header.written_at.timestamp()
        self.erase_left = list(header.erase_pending)
        took = time.perf_counter() - started
        self.recovery = (
            f"restored from snapshot at seq {header.applied_seq} in {took:.2f}s "
            f"(written by {header.origin})"
        )
        steps = ", ".join(f"{name} {t:.3f}" for name, t in restored.times.items())
        log.info(
            "space %s: restored %d memories at seq %d from its snapshot in %.2fs "
            "(done at: %s); tailing %d newer messages",
            host.space,
            len(state),
            header.applied_seq,
            took,
            steps,
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
        # to fold again after a crash, and a snapshot of a big space costs seconds
        # of CPU and pauses the fold, so it waits ten intervals (a graceful stop
        # writes it)
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
        """Write a snapshot of the applied state now and erase the previous one.

        Queries go on meanwhile: the fold is paused while the records are captured
        and the index serialised (both in threads), and the index lock is held for
        writing only to insert what is pending and scrub forgotten vectors, then
        downgraded to reading (see :meth:`_capture`). Encoding and writing hold
        nothing a query needs."""
        if self._store is None:
            raise RuntimeError("this host has no snapshot store")
        async with self._lock:
            await self._host.erase_queue.retry_failed()
            forget_mark, since = self.forget_due, 0
            try:
                async with self._host.fold_paused():
                    header, records, index_bytes = await self._capture(origin)
                    since = self.since_snapshot
                    self.captured_seq, self.forget_due = header.applied_seq, None
                    self.since_snapshot = 0
                seq = header.applied_seq
                # a message being folded at capture may still be erasing what it replaced
                await self._host.wait_applied(seq, self._host.settings.apply_wait_timeout)
                await write_snapshot(self._store, header, records, index_bytes)
                del index_bytes, records
                if can_release():  # the snapshot's buffers (the index's bytes and more)
                    await asyncio.to_thread(release)
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

    async def _capture(
        self, origin: str | None
    ) -> tuple[SnapshotHeader, dict[str, Column], bytearray]:
        """The header, records and index bytes of the state now (call with the fold
        paused): the records and the index hold exactly the same keys, at the same
        applied seq.

        Under the index lock for writing: insert what is pending, absorb the links
        found (so capturing changes nothing) and scrub forgotten vectors, if any.
        Then the lock is downgraded to reading, so no insert slips in while
        recalls search beside the two threads that capture the records and
        serialise the index."""
        host = self._host
        state, lock = host.state, host.indexer.lock
        await lock.acquire_write()
        try:
            batch = state.indexing.take()
            if batch is not None:
                await host.indexer.run(batch)
            state.flush()  # nothing is left pending (the fold is paused)
            _ = state.graph  # absorbs the links found: capture reads, changes nothing
            index = state.index
            if index.dirty:  # no forgotten vector in the bytes
                await _in_threads(index.scrub)
        except BaseException:
            lock.release_write()
            raise
        lock.downgrade()
        try:
            header = snapshot_header(
                state,
                host.record,
                host.settings.index_dtype,
                origin or f"worker {host.settings.worker_id}",
                host.erase_queue.pending(),
            )
            records, index_bytes = await _in_threads(
                functools.partial(capture, state), index.to_bytes
            )
        finally:
            lock.release_read()
        return header, records, index_bytes


#: the snapshot's own threads: capturing a big space does not hold up the
#: default executor's threads, where recalls run
_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="engram-snapshot")


@overload
async def _in_threads(a: Callable[[], A], /) -> tuple[A]: ...
@overload
async def _in_threads(a: Callable[[], A], b: Callable[[], B], /) -> tuple[A, B]: ...
async def _in_threads(*fns: Callable[[], Any]) -> tuple[Any, ...]:
    """Each of ``fns`` in a snapshot thread, side by side. Returns (or raises) only
    once every one is done, even when cancelled: the caller's locks stay held
    while a thread still reads the state."""
    loop = asyncio.get_running_loop()
    runs = [loop.run_in_executor(_THREADS, fn) for fn in fns]
    everything = asyncio.ensure_future(asyncio.wait(runs))
    try:
        await asyncio.shield(everything)
    except asyncio.CancelledError:
        await everything
        raise
    return tuple(run.result() for run in runs)
