"""Which workers are alive: heartbeats in KV ``ENGRAM_WORKERS``, watched by all.

A worker *announces* itself under its id (refused when another live process
already holds that id), then beats every ``ttl / 3`` seconds with a compare-and-
set on its own revision, so a second process that took the id over is noticed by
the first one's next beat. A graceful stop first marks the beat ``leaving``
(every watcher places the worker's spaces elsewhere at once while it still
answers), then deletes the key. A worker that dies stops beating; watchers drop
it ``ttl`` seconds after its last beat *arrived* (their own monotonic clock,
never the writer's wall clock; each beat carries the TTL its writer beats for).
Gateways and workers alike follow the live set through :class:`Membership`;
spaces are placed with :mod:`engram_contract.placement`.

The bucket's ``max_age`` only collects the keys of workers that died long ago;
liveness never depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from engram_contract.messages import WorkerBeat
from engram_contract.subjects import WORKERS_BUCKET
from engram_nats.connection import settled

log = logging.getLogger(__name__)

#: keys of workers silent this many TTLs are removed by the bucket itself
_KEEP_TTLS = 20

Listener = Callable[[frozenset[str]], Awaitable[None]]


class AwakeClock:
    """Monotonic seconds this process was awake to see heartbeats. Time its event
    loop spent stalled (busy with other work, or the machine starved) is left out:
    beats that arrived meanwhile wait in the queue and would otherwise look late,
    making a busy watcher declare live workers dead."""

    TICK = 0.1
    GRACE = 0.5  # a gap longer than this between ticks is a stall

    def __init__(self) -> None:
        self._stalled = 0.0
        self._last = time.monotonic()

    def now(self) -> float:
        t = time.monotonic()
        return t - self._stalled - max(0.0, t - self._last - self.GRACE)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            t = time.monotonic()
            gap = t - self._last
            if gap > self.GRACE:
                self._stalled += gap - self.TICK
            self._last = t


class WorkerIdTaken(RuntimeError):
    """Another live process announced the same worker id."""


class Membership:
    """The live workers, as seen from one process (a worker or a gateway)."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        ttl: float,
        replicas: int = 1,
        bucket: str = WORKERS_BUCKET,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"the worker TTL must be positive, got {ttl}")
        self.ttl = ttl
        self._js = js
        self._replicas = replicas
        self._bucket = bucket
        self._kv: KeyValue | None = None
        self.clock = AwakeClock()
        self._seen: dict[str, tuple[float, WorkerBeat]] = {}  # id → (awake arrival, beat)
        self._live: frozenset[str] = frozenset()
        self._listeners: list[Listener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: object | None = None
        self.loaded = asyncio.Event()
        self._changed = asyncio.Event()  # replaced by a fresh one on every change
        # set by announce()
        self.me: WorkerBeat | None = None
        self._revision = 0
        self.lost = asyncio.Event()  # our id was taken over: stop serving

    # -- following ---------------------------------------------------------

    async def open(self) -> None:
        self._kv = await settled(self._open, f"opening KV {self._bucket}")

    async def _open(self) -> KeyValue:
        try:
            return await self._js.key_value(self._bucket)
        except BucketNotFoundError:
            return await self._js.create_key_value(
                bucket=self._bucket,
                history=1,
                ttl=max(self.ttl * _KEEP_TTLS, 60.0),
                storage=api.StorageType.FILE,
                replicas=self._replicas,
                description="Engram live workers (heartbeats)",
            )

    @property
    def kv(self) -> KeyValue:
        assert self._kv is not None, "Membership.open() first"
        return self._kv

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(live_worker_ids)`` whenever the live set changes."""
        self._listeners.append(listener)

    def live(self) -> frozenset[str]:
        """The ids of the workers alive now (this process's own id included)."""
        return self._live

    async def wait_gone(self, workers: frozenset[str] | set[str]) -> None:
        """Return once any of ``workers`` is no longer alive (never, for none)."""
        if not workers:
            await asyncio.Event().wait()  # nobody to lose: until cancelled
        while workers <= self._live:
            await self._changed.wait()

    async def start(self) -> None:
        """Open the bucket, follow it, and return once its current state is in."""
        if self._kv is None:
            await self.open()
        last_entry = self.clock.now()

        async def watch() -> None:
            """Follow the bucket; a new watch (after a NATS restart lost the old
            one's consumer) ages the values it finds by their server stamps."""
            nonlocal last_entry
            watcher = await settled(self.kv.watchall, "watching the live workers")
            self._watcher = watcher
            initial = True
            async for entry in watcher:
                last_entry = self.clock.now()
                if entry is None:  # the end of the current values
                    initial = False
                    await self._refresh()
                    self.loaded.set()
                    continue
                if entry.operation is not None or not entry.value:
                    self._seen.pop(entry.key, None)  # deleted: a graceful leave
                else:
                    try:
                        beat = WorkerBeat.model_validate_json(entry.value)
                    except ValidationError:
                        log.error("membership: unreadable heartbeat under %r", entry.key)
                        continue
                    arrived = self.clock.now()
                    if initial and entry.created is not None:
                        # written before we looked: age it by the server's stamp
                        age = (datetime.now(UTC) - entry.created).total_seconds()
                        arrived -= max(age, 0.0)
                    self._seen[entry.key] = (arrived, beat)
                if not initial:
                    await self._refresh()

        async def sweep() -> None:
            nonlocal last_entry
            watching = asyncio.create_task(watch(), name="membership-watch")
            try:
                while True:
                    await asyncio.sleep(self.ttl / 4)
                    await self._refresh()
                    # a watch that heard nothing for 2 TTLs (not even our own
                    # beats, or anyone's) lost its consumer: watch again
                    if watching.done() or self.clock.now() - last_entry > 2 * self.ttl:
                        log.debug("membership: the watch went quiet; watching again")
                        watching.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await watching
                        if self._watcher is not None:
                            with contextlib.suppress(Exception):
                                await asyncio.wait_for(self._watcher.stop(), 2.0)  # type: ignore[attr-defined]
                        last_entry = self.clock.now()
                        watching = asyncio.create_task(watch(), name="membership-watch")
            finally:
                watching.cancel()

        self._tasks = [
            asyncio.create_task(self.clock.run(), name="membership-clock"),
            asyncio.create_task(sweep(), name="membership-sweep"),
        ]
        await asyncio.wait_for(self.loaded.wait(), max(self.ttl, 10.0))

    async def _refresh(self) -> None:
        now = self.clock.now()
        live = {
            w
            for w, (arrived, beat) in self._seen.items()
            if now - arrived < beat.ttl and not beat.leaving
        }
        me = self.me
        if me is not None and not self.lost.is_set():
            # this process decides about itself: an older beat of its own, read
            # back from the bucket after it said it leaves, must not revive it
            if me.leaving:
                live.discard(me.id)
            else:
                live.add(me.id)
        if live == self._live:
            return
        self._live = frozenset(live)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in self._listeners:
            try:
                await listener(self._live)
            except Exception:
                log.exception("membership listener failed")

    # -- announcing (workers) ----------------------------------------------

    async def announce(self, worker_id: str) -> None:
        """Claim ``worker_id`` and start beating (call :meth:`start` first). When
        the id beat less than a TTL ago, waits until that beat is a TTL old (the
        same worker restarted at once) and raises :class:`WorkerIdTaken` if it
        beats again meanwhile (another live process has the id)."""
        now = datetime.now(UTC)
        beat = WorkerBeat(
            id=worker_id,
            instance=os.urandom(8).hex(),
            started_at=now,
            beat_at=now,
            ttl=self.ttl,
        )
        data = beat.model_dump_json().encode()
        kv = self.kv
        # a bucket just created in a cluster may not answer until its stream has
        # a leader
        last = await settled(lambda: _outlive(kv, worker_id), "reading the id's last beat")
        self._revision = await settled(lambda: _claim(kv, worker_id, data, last), "claiming the id")
        self.me = beat
        self._seen[worker_id] = (self.clock.now(), beat)
        await self._refresh()
        self._tasks.append(asyncio.create_task(self._beat(), name="membership-beat"))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            me = self.me
            assert me is not None
            me = me.model_copy(update={"beat_at": datetime.now(UTC)})
            try:
                self._revision = await self.kv.update(
                    me.id, me.model_dump_json().encode(), last=self._revision
                )
            except KeyWrongLastSequenceError:
                if await self._own_beat_landed(me):
                    continue  # a beat of ours whose ack timed out: go on from it
                log.error(
                    "membership: another process took over worker id %r; this one stops "
                    "answering for it",
                    me.id,
                )
                self.lost.set()
                await self._refresh()
                return
            except Exception as exc:  # a NATS hiccup: try again next beat
                log.warning("membership: heartbeat of %r failed: %s", me.id, exc)
                continue
            self.me = me

    async def _own_beat_landed(self, me: WorkerBeat) -> bool:
        """Whether the key still is this process's: its newer revision is our own
        beat (same ``instance``; a busy broker stored it but its ack timed out),
        or the key is gone (the bucket's ``max_age`` removed it while our beats
        failed) and we create it again. Then beating goes on from there."""
        try:
            entry = await _last_beat(self.kv, me.id)
            if entry is None:
                self._revision = int(await self.kv.create(me.id, me.model_dump_json().encode()))
                return True
        except KeyWrongLastSequenceError:  # another process created it meanwhile
            return False
        except Exception:  # cannot tell now: not a takeover yet, ask next beat
            return True
        if entry.value is None:
            return False
        try:
            current = WorkerBeat.model_validate_json(entry.value)
        except ValidationError:
            return False
        if current.instance != me.instance:
            return False
        self._revision = entry.revision or 0
        return True

    async def leave(self) -> None:
        """Announce that this worker is leaving: every watcher places its spaces
        elsewhere at once, while it goes on answering until they are taken over
        (then :meth:`depart`)."""
        me = self.me
        if me is None or self.lost.is_set() or me.leaving:
            return
        self.me = me = me.model_copy(update={"leaving": True, "beat_at": datetime.now(UTC)})
        for task in self._tasks:
            if task.get_name() == "membership-beat":
                task.cancel()
        try:
            self._revision = await self.kv.update(
                me.id, me.model_dump_json().encode(), last=self._revision
            )
        except Exception as exc:  # watchers drop it after the TTL instead
            log.warning("membership: could not announce that %r leaves: %r", me.id, exc)
        await self._refresh()

    async def depart(self) -> None:
        """Remove this worker's key (after :meth:`leave` and the handover)."""
        me = self.me
        if me is None or self.lost.is_set():
            return
        await self.leave()
        with contextlib.suppress(Exception):
            await self.kv.delete(me.id, last=self._revision)
        self.me = None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._watcher.stop(), 2.0)  # type: ignore[attr-defined]


async def _last_beat(kv: KeyValue, worker_id: str) -> KeyValue.Entry | None:
    try:
        return await kv.get(worker_id)
    except KeyNotFoundError:
        return None


def _live_beat(entry: KeyValue.Entry | None) -> WorkerBeat | None:
    """The beat under ``entry`` if it speaks for a process that may still be alive
    (not deleted, not leaving, readable)."""
    if entry is None or not entry.value:
        return None
    try:
        beat = WorkerBeat.model_validate_json(entry.value)
    except ValidationError:
        return None
    return None if beat.leaving else beat


async def _outlive(kv: KeyValue, worker_id: str) -> int | None:
    """Wait until the last beat under ``worker_id`` is a TTL old (a process of ours
    that died and was restarted at once) and return its revision (``None``: no
    key); raise :class:`WorkerIdTaken` if the id beats again meanwhile (another
    live process holds it, beating every TTL / 3).

    Decided on the bucket's own revisions, never on what a watch has delivered so
    far: a starved process may wake from its wait before its watch has read the
    beats that arrived meanwhile, and would then take a live worker's id."""
    entry = await _last_beat(kv, worker_id)
    beat = _live_beat(entry)
    if entry is None:
        return None
    revision = entry.revision or 0
    if beat is not None:
        # a read carries no timestamp: wait a whole TTL (plus a margin for a
        # beat on its way) from now
        await asyncio.sleep(beat.ttl + 0.25)
        newer = await _last_beat(kv, worker_id)
        if newer is None:
            return None
        if newer.revision != revision and _live_beat(newer) is not None:
            raise WorkerIdTaken(_taken(worker_id, beat.ttl))
        revision = newer.revision or 0
    return revision


async def _claim(kv: KeyValue, worker_id: str, data: bytes, last: int | None) -> int:
    """Put our first beat under ``worker_id``: created, or over ``last`` (the last
    beat of a life that is over); :class:`WorkerIdTaken` if anything was written
    there since (another process beat or claimed it meanwhile)."""
    try:
        if last is None:
            return int(await kv.create(worker_id, data))
        return int(await kv.update(worker_id, data, last=last))
    except KeyWrongLastSequenceError as exc:
        raise WorkerIdTaken(_taken(worker_id, 0.0)) from exc


def _taken(worker_id: str, within: float) -> str:
    when = f"it beat within the last {within:.1f} s" if within else "it claimed the id just now"
    return (
        f"another worker with ENGRAM_WORKER_ID={worker_id!r} is alive ({when}); "
        "give every worker its own id"
    )
