"""The spaces a worker holds in memory: loaded when placement puts a space here
(:mod:`engram_worker.placement`) or on a query, unloaded when it moves away,
dropped (snapshot erased, events purged) when the registry says one was deleted,
and the spaces that could not be loaded, with why."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from engram_contract.messages import SpaceRecord
from engram_contract.settings import WorkerSettings
from engram_nats.registry import SpaceRegistry
from engram_nats.streams import purge_events
from engram_worker.host import SpaceHost
from engram_worker.memory import reclaim
from engram_worker.metrics import WorkerMetrics
from engram_worker.queries import QueryFailed
from engram_worker.snapshots import SnapshotStore

log = logging.getLogger(__name__)
#: spaces loaded (snapshot restored, WAL consumer created) at the same time
MAX_LOADING = 16
#: why a space whose WAL stream disappeared (deleted outside Engram, or lost) is failed
WAL_GONE = "its WAL stream is gone (deleted outside Engram, or lost)"
#: seconds after the last unload of a burst that the memory is reclaimed
RECLAIM_AFTER_S = 2.0


class Wiring(Protocol):
    """What hosting needs of the worker (its connections once it has started)."""

    @property
    def settings(self) -> WorkerSettings: ...

    @property
    def metrics(self) -> WorkerMetrics: ...

    @property
    def nc(self) -> Client: ...

    @property
    def registry(self) -> SpaceRegistry: ...

    @property
    def snapshots(self) -> SnapshotStore: ...


class Hosting:
    """The hosted spaces (:attr:`hosts`), those being loaded (:attr:`loading`) and
    those that failed to load (:attr:`failed`)."""

    def __init__(self, worker: Wiring) -> None:
        self._worker = worker
        self.hosts: dict[str, SpaceHost] = {}
        self.loading: dict[str, asyncio.Task[SpaceHost]] = {}
        self.failed: dict[str, str] = {}  # spaces that could not be loaded, and why
        self._start_slots = asyncio.Semaphore(MAX_LOADING)
        self._reclaim: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Every hosted space writes a snapshot if it changed (its primary)."""
        if self._reclaim is not None:
            self._reclaim.cancel()
        hosts = list(self.hosts.values())
        self.hosts.clear()
        await asyncio.gather(*(h.stop(snapshot=True) for h in hosts), return_exceptions=True)

    async def on_registry_change(self, space: str, rec: SpaceRecord | None) -> None:
        w = self._worker
        host = self.hosts.get(space)
        if host is not None and (
            rec is None or rec.status != "active" or rec.created_at != host.record.created_at
        ):
            # deleted, being deleted, or deleted and created again: drop the old state
            del self.hosts[space]
            host.retired = True
            await host.stop()
            host = None
            self.reclaim_soon()
            w.metrics.spaces.forget(space)  # a new incarnation starts from zero
        if rec is None or rec.status == "deleting":
            self.failed.pop(space, None)
            w.metrics.spaces.forget(space)
            try:
                await w.snapshots.erase(space)
            except Exception:
                log.exception("space %s: could not erase its snapshot", space)
            try:
                await purge_events(w.nc.jetstream(), space)
            except Exception:
                log.exception("space %s: could not purge its events", space)

    async def load_quietly(self, space: str) -> None:
        """Load ``space`` now; a failure is logged and kept in :attr:`failed`."""
        with contextlib.suppress(QueryFailed):
            await self.ensure_host(space)

    async def unload(self, space: str) -> None:
        """Let go of ``space`` (placed elsewhere now): its primary writes a last
        snapshot if anything changed."""
        host = self.hosts.pop(space, None)
        self.failed.pop(space, None)
        if host is not None:
            await host.stop(snapshot=True)
            self._worker.metrics.spaces.forget(space)
            self.reclaim_soon()

    def reclaim_soon(self) -> None:
        """Give the memory of spaces let go back to the system, once a burst of
        unloads is over (:func:`~engram_worker.memory.reclaim`)."""
        if self._reclaim is None or self._reclaim.done():
            self._reclaim = asyncio.create_task(self._reclaim_later(), name="reclaim")

    async def _reclaim_later(self) -> None:
        await asyncio.sleep(RECLAIM_AFTER_S)
        found, took = reclaim()
        log.info(
            "worker: reclaimed the memory of unloaded spaces (%d objects, %.2f s)", found, took
        )

    async def wal_gone(self, space: str) -> None:
        """The WAL stream of ``space`` was deleted. By Engram's own delete the
        record says ``deleting`` (or is gone) and the registry watch unloads it;
        otherwise the space is failed: it stops answering from memory (its state
        can no longer be written nor recovered) and says why."""
        host = self.hosts.get(space)
        if host is None:
            return
        rec = await self._worker.registry.get(space)
        if rec is None or rec.status != "active" or rec.created_at != host.record.created_at:
            return  # Engram's own delete (or a new incarnation): not a failure
        if self.hosts.get(space) is not host:
            return
        del self.hosts[space]
        self.failed[space] = WAL_GONE
        log.error("space %s: %s; no longer served from memory", space, WAL_GONE)
        await host.stop()
        self._worker.metrics.spaces.forget(space)
        self.reclaim_soon()

    async def ensure_host(self, space: str) -> SpaceHost:
        """The host of ``space``, loading it first if needed (concurrent callers share
        one load). Raises :class:`QueryFailed` (404) for unknown spaces."""
        host = self.hosts.get(space)
        if host is not None:
            return host
        task = self.loading.get(space)
        if task is None:
            task = asyncio.create_task(self._load(space))
            self.loading[space] = task
            task.add_done_callback(lambda _: self.loading.pop(space, None))
        return await asyncio.shield(task)

    async def _load(self, space: str) -> SpaceHost:
        registry = self._worker.registry
        rec = registry.cached(space)
        if rec is None or rec.status != "active":
            # not known here, or a deleted space's record while the watcher has yet
            # to deliver its re-creation: the KV is the authority
            rec = await registry.get(space)
        if rec is None or rec.status != "active":
            raise QueryFailed(404, "Space not found", f"memory space {space!r} does not exist")
        try:
            host = await self.start_host(rec)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, NotFoundError) and "stream" in str(exc).lower():
                reason = WAL_GONE
            self.failed[space] = reason
            log.error("space %s: failed to load: %s", space, reason)
            raise QueryFailed(
                503, "Space unavailable", f"memory space {space!r} failed to load: {reason}"
            ) from exc
        self.failed.pop(space, None)
        self.hosts[space] = host
        return host

    async def start_host(self, rec: SpaceRecord) -> SpaceHost:
        """A started host of ``rec`` (not yet in :attr:`hosts`)."""
        w = self._worker
        host = SpaceHost(rec, w.nc, w.nc.jetstream(), w.settings, w.snapshots)
        try:
            # a bounded number at once: each load reads its snapshot through a
            # consumer on the one snapshot stream, and a worker starting with
            # hundreds of spaces hit JetStream's consumer limit there
            async with self._start_slots:
                await host.start()
        except BaseException:
            await host.stop()
            raise
        return host
