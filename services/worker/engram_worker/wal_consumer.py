"""Tailing a space's WAL: an ordered push consumer with a callback (nats-py runs
one callback at a time per subscription, so the fold sees the stream in order;
it replays at >150k msg/s here, pull-fetch loops at ~35k). The consumer knows how
far the space has folded and announced (``done_seq``), how far the stream goes
as last seen (``stream_last``), and wakes the queries waiting for a position."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from engram_contract.settings import WorkerSettings
from engram_contract.subjects import command_verb, stream_name, wal_subjects
from engram_worker.core.events import Event, Rejected
from engram_worker.memory import can_release, release
from engram_worker.metrics import WorkerMetrics
from engram_worker.positions import position

if TYPE_CHECKING:
    from engram_worker.host import SpaceHost

log = logging.getLogger(__name__)
#: after folding this many messages, the first time the fold catches up with the
#: stream, the freed heap is handed back (:mod:`engram_worker.memory`)
RELEASE_AFTER = 8192


class NotCaughtUp(TimeoutError):
    def __init__(self, space: str, applied: int, wanted: int) -> None:
        super().__init__(
            f"space {space!r} has applied up to seq {applied}; seq {wanted} was not applied "
            "in time (the worker is still catching up; retry, or use consistency=eventual)"
        )


class WalConsumer:
    """Feeds one space's WAL messages, in order, to its host's fold."""

    def __init__(self, host: SpaceHost, js: JetStreamContext, settings: WorkerSettings) -> None:
        self._host = host
        self._js = js
        self._settings = settings
        self._sub: JetStreamContext.PushSubscription | None = None
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._folded = 0
        self.done_seq = 0  # every message up to here is folded and announced
        #: the stream's last seq as last seen (at start, then from each message's
        #: pending count): ``stream_last - applied_seq`` is the WAL lag, no request needed
        self.stream_last = 0
        self.progress_at = time.monotonic()  # when the fold last moved (stuck detection)
        self.counts: dict[tuple[str, str], int] = {}  # (verb, outcome) → folded
        self.rejections: list[str] = []  # reasons, since the last drain_counts
        # _folded when the freed heap was last released (None: it cannot be, not glibc)
        self._released_at: int | None = 0 if can_release() else None
        self._release: asyncio.Task[None] | None = None

    async def start(self, applied_seq: int) -> None:
        """Fold everything after ``applied_seq``."""
        space = self._host.space
        self.done_seq = applied_seq
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=applied_seq + 1
        )
        self._sub = await self._js.subscribe(
            wal_subjects(space),
            stream=stream_name(space),
            ordered_consumer=True,
            cb=self._on_msg,
            config=config,
            idle_heartbeat=self._settings.wal_heartbeat,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self._release is not None:
            self._release.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._release

    def cancel_waiters(self) -> None:
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    async def _on_msg(self, msg: Msg) -> None:
        host = self._host
        try:
            seq, stamp, after = position(msg.reply)
            verb = command_verb(msg.subject)
            # nothing pending after this message: the stream ends here (erased
            # messages never count), else at least this far
            self.stream_last = seq if after == 0 else max(self.stream_last, seq + after)
            await host.fold(verb, msg.data, seq, stamp, after)
            self._folded += 1
            if (
                after == 0
                and self._released_at is not None
                and self._folded - self._released_at >= RELEASE_AFTER
                and (self._release is None or self._release.done())
            ):
                self._released_at = self._folded
                self._release = asyncio.create_task(self._release_memory())
            if self._folded % 256 == 0:
                # nats-py hands queued messages to this callback without yielding:
                # give queries and the flush task a turn
                await asyncio.sleep(0)
        except Exception:  # the fold must never stall the space
            log.exception("space %s: failed on a WAL message", host.space)
        finally:
            self.done_seq = host.state.applied_seq
            self.progress_at = time.monotonic()
            self._wake(self.done_seq)

    async def _release_memory(self) -> None:
        """Once the index has taken what the fold left pending (its batches are most
        of what was freed), hand the freed heap back to the system, in a thread."""
        for _ in range(240):  # at most a minute
            indexing = self._host.state.indexing
            if not (indexing.pending or indexing.inflight):
                break
            await asyncio.sleep(0.25)
        started = time.perf_counter()
        await asyncio.to_thread(release)
        log.info(
            "space %s: after a bulk fold, freed heap released in %.3f s",
            self._host.space,
            time.perf_counter() - started,
        )

    def count(self, verb: str, event: Event) -> None:
        """Count a folded command. Plain ints here (the fold's hot path); the worker
        adds them to the Prometheus counters when it refreshes its metrics."""
        rejected = type(event) is Rejected
        key = (verb, "rejected" if rejected else "applied")
        self.counts[key] = self.counts.get(key, 0) + 1
        if type(event) is Rejected:
            self.rejections.append(event.reason)

    def drain_counts(self, metrics: WorkerMetrics) -> None:
        """Add the commands folded (and rejections) since the last call to the
        worker's counters."""
        counts, self.counts = self.counts, {}
        rejections, self.rejections = self.rejections, []
        for (verb, outcome), n in counts.items():
            metrics.command(self._host.space, verb, outcome, n)
        for reason in rejections:
            metrics.rejection(self._host.space, reason)

    def _wake(self, applied: int) -> None:
        while self._waiters and self._waiters[0][0] <= applied:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    async def wait_applied(self, seq: int, timeout: float) -> None:
        """Return once ``seq`` is applied and announced; raise :class:`NotCaughtUp`
        after ``timeout``."""
        if self.done_seq >= seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._tiebreak), fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise NotCaughtUp(self._host.space, self._host.state.applied_seq, seq) from None

    @property
    def wal_lag(self) -> int:
        """WAL messages not folded yet, as far as this host has seen the stream."""
        return max(0, self.stream_last - self._host.state.applied_seq)
