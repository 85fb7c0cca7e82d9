"""Which spaces this worker hosts, kept in step with the live workers.

Every worker computes the same answer from the same inputs, with no coordinator:
the registry's active spaces, the live workers (:class:`~engram_nats.membership.Membership`)
and ``ENGRAM_SPACE_REPLICAS``, through rendezvous hashing
(:mod:`engram_contract.placement`). A space placed here is *served* — its queries
subscribed on ``spaces.<id>.q.*`` — only once it is loaded and has caught up
with its WAL. A space placed elsewhere is *released* only once one of its new
hosts serves it (asked on ``engram.ctl.serving.<worker id>``), so a planned join
or a graceful leave loses no query: make before break. The first live host in a
space's order is its primary: it alone writes snapshots, erases WAL messages and
runs the consolidation schedule (:attr:`SpaceHost.primary`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from engram_contract.placement import hosts
from engram_contract.subjects import QUERY_QUEUE, query_wildcard, serving_subject
from engram_nats.membership import Membership
from engram_worker.hosting import Hosting
from engram_worker.hosting import Wiring as HostingWiring
from engram_worker.idle import IdleSpaces
from engram_worker.queries import QueryFailed

log = logging.getLogger(__name__)

#: how often a releasing worker asks the new hosts whether they serve yet
_POLL = 0.2


class Wiring(HostingWiring, Protocol):
    """What placement needs of the worker: hosting's wiring, the hosting itself
    and the query callback it subscribes."""

    @property
    def hosting(self) -> Hosting: ...

    async def on_query(self, msg: Msg) -> None: ...


class Placement:
    """The spaces this worker serves (:attr:`serving`), and the work of getting
    there whenever the registry or the live workers change (:meth:`poke`)."""

    def __init__(self, worker: Wiring, membership: Membership) -> None:
        self.worker = worker
        self.membership = membership
        self.serving: dict[str, Subscription] = {}
        self._moving: dict[str, asyncio.Task[None]] = {}  # a serve or release under way
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()
        self.stopping = False
        self.me = worker.settings.worker_id
        self.idle = IdleSpaces(self, worker.settings.space_idle_unload)

    def hosts_of(self, space: str) -> list[str]:
        """The live workers that host ``space``, its primary first."""
        return hosts(space, self.membership.live(), self.worker.settings.space_replicas)

    def placed_here(self, space: str) -> bool:
        return not self.stopping and self.me in self.hosts_of(space)

    def wanted(self) -> set[str]:
        """The registry's active spaces placed on this worker."""
        return {
            rec.id
            for rec in self.worker.registry.cached_all()
            if rec.status == "active" and self.placed_here(rec.id)
        }

    # -- running -----------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="placement")
        self.idle.start()
        self.poke()

    def moving(self, space: str) -> bool:
        """Whether ``space`` is being loaded here or handed over."""
        return space in self._moving

    def poke(self) -> None:
        """Something changed (registry, membership, a move finished): reconcile."""
        self._settled.clear()
        self._wake.set()

    async def settled(self, timeout: float) -> bool:
        """Wait until every wanted space is served and nothing is moving."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._reconcile()
            except Exception:
                log.exception("placement: reconcile failed")

    def _reconcile(self) -> None:
        want = self.wanted()
        for space in sorted(want):
            if space not in self.serving and space not in self._moving:
                self._move(space, self._serve(space))
        for space in sorted(self.serving):
            if space in self._moving:
                continue
            if space not in want:
                self._move(space, self._release(space))
            elif (
                space not in self.worker.hosting.hosts
                and space not in self.worker.hosting.failed
                and space not in self.idle.cold
            ):
                # deleted and created again: the new incarnation loads now, not on
                # its first query
                self._move(space, self.worker.hosting.load_quietly(space))
        for space, host in self.worker.hosting.hosts.items():
            # a space on its way out stays as it was until released: during a
            # handover the old and the new primary may both write, which the
            # snapshot store's compare-and-set and idempotent erasing allow
            if space in want:
                host.set_primary(self.hosts_of(space)[0] == self.me)
        self.worker.metrics.placement(len(want), len(self.worker.hosting.hosts))
        unserved = want - set(self.serving) - set(self.worker.hosting.failed)
        if not self._moving and not unserved:
            self._settled.set()

    def _move(self, space: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=f"place-{space}")
        self._moving[space] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._moving.get(space) is t:
                del self._moving[space]
            if not t.cancelled() and t.exception() is not None:
                log.error("space %s: placement step failed: %r", space, t.exception())
            self.poke()

        task.add_done_callback(done)

    async def _serve(self, space: str) -> None:
        """Load ``space``, catch up with its WAL, then answer its queries (with idle
        unloading on, a space not loaded here is served cold: its first query or
        write loads it)."""
        started = time.monotonic()
        try:
            if self.idle.enabled and space not in self.worker.hosting.hosts:
                await self.idle.park(space)
            else:
                host = await self.worker.hosting.ensure_host(space)
                await host.caught_up()
        except QueryFailed:
            # failed to load (kept in hosting.failed): its queries are answered here
            # all the same, with why (503), and each one tries to load it again
            pass
        except Exception as exc:
            log.error("space %s: could not be served here: %r; trying again", space, exc)
            await asyncio.sleep(1.0)  # the next reconcile tries again, not at once
            return
        if not self.placed_here(space):
            # placed elsewhere while it loaded (or was parked cold): never served
            # here, so no release lets go of it; it must not stay loaded or parked
            # here (workers started together)
            await self.worker.hosting.unload(space)
            await self.idle.unpark(space)
            return
        self.serving[space] = await self.worker.nc.subscribe(
            query_wildcard(space), queue=QUERY_QUEUE, cb=self.worker.on_query
        )
        await self.worker.nc.flush()  # served means the server routes its queries here
        took = time.monotonic() - started
        self.worker.metrics.space_loaded(took)
        log.info("worker %s: space %s: serving (%.2f s to load and catch up)", self.me, space, took)

    async def _release(self, space: str) -> None:
        """Stop serving ``space`` once a new host serves it (or none is left alive)."""
        deadline = time.monotonic() + self.worker.settings.handover_timeout
        while not self.placed_here(space):
            rec = self.worker.registry.cached(space)
            if rec is None or rec.status != "active":
                break  # deleted: nobody takes it over
            others = [w for w in self.hosts_of(space) if w != self.me]
            if not others or await served_by(self.worker.nc, others, space):
                break
            if time.monotonic() > deadline:
                log.warning(
                    "space %s: %s did not serve it within %.0f s; releasing it anyway",
                    space,
                    ", ".join(others),
                    self.worker.settings.handover_timeout,
                )
                break
            await asyncio.sleep(_POLL)
        else:
            return  # placed here again: keep serving
        sub = self.serving.pop(space, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]  # answers what was delivered first
        await self.worker.hosting.unload(space)
        await self.idle.unpark(space)
        self.worker.metrics.space_moved()
        log.info(
            "worker %s: space %s released to %s (live: %s)",
            self.me,
            space,
            ", ".join(self.hosts_of(space)) or "nobody",
            ", ".join(sorted(self.membership.live())),
        )

    async def leave(self) -> None:
        """A graceful stop: hand every space over before letting go of it."""
        self.stopping = True
        self.poke()
        await self.settled(self.worker.settings.handover_timeout + 5.0)

    async def stop(self) -> None:
        await self.idle.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self._moving.values()):
            task.cancel()
        for sub in self.serving.values():
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]  # answers what was delivered first
        self.serving.clear()


async def served_by(nc: Client, workers: list[str], space: str) -> bool:
    """Whether any of ``workers`` serves ``space`` (asked on ``engram.ctl.serving``)."""

    async def ask(worker: str) -> bool:
        try:
            msg = await nc.request(
                serving_subject(worker), json.dumps([space]).encode(), timeout=1.0
            )
            return space in json.loads(msg.data)
        except Exception:  # gone, slow, or an answer that is not a list: not yet
            return False

    return any(await asyncio.gather(*(ask(w) for w in workers)))
