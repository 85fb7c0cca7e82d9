"""The worker's composition root: hosts spaces and answers their queries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar, cast, get_args

import numpy as np
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError

from engram_contract.messages import (
    ConsolidateRequest,
    ConsolidateResponse,
    ExportedMemory,
    ExportLink,
    ExportRequest,
    FailedSpace,
    GetRequest,
    GetResponse,
    HostedSpace,
    ListRequest,
    ListResponse,
    Memory,
    MemoryKind,
    RecallRequest,
    RecallResponse,
    ReloadReply,
    ReloadRequest,
    SpaceRecord,
    StatsRequest,
    StatsResponse,
    StatusRequest,
    WorkerStatus,
    encode_embedding,
    error_reply,
)
from engram_contract.settings import WorkerSettings
from engram_contract.subjects import QUERY_QUEUE, RELOAD_SUBJECT, STATUS_SUBJECT, QueryName
from engram_nats.connection import connect
from engram_nats.registry import SpaceRegistry
from engram_nats.streams import purge_events
from engram_worker.core.export import ExportItem, export_page
from engram_worker.core.recall import RecallQuery
from engram_worker.core.records import StoredMemory
from engram_worker.core.state import SpaceState
from engram_worker.core.wal import wrong_space
from engram_worker.host import NotCaughtUp, SpaceHost
from engram_worker.metrics import OTHER, worker_metrics
from engram_worker.snapshots import SnapshotStore

log = logging.getLogger(__name__)
_QUERIES = frozenset(get_args(QueryName))
#: spaces loaded (snapshot restored, WAL consumer created) at the same time
MAX_LOADING = 16
#: seconds between two refreshes of the per-space gauges (each scrape refreshes too)
METRICS_REFRESH = 5.0
_HTTP_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}


class QueryFailed(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _invalid(exc: ValidationError) -> QueryFailed:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return QueryFailed(400, "Invalid query", "; ".join(parts))


class Worker:
    """Hosts every active space in the registry (sharding comes with more workers)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.hosts: dict[str, SpaceHost] = {}
        self._loading: dict[str, asyncio.Task[SpaceHost]] = {}
        self._start_slots = asyncio.Semaphore(MAX_LOADING)
        self._nc: Client | None = None
        self._registry: SpaceRegistry | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._query_slots = asyncio.Semaphore(settings.query_concurrency)
        self._snapshots: SnapshotStore | None = None
        self.failed: dict[str, str] = {}  # spaces that could not be loaded, and why
        self.metrics = worker_metrics(CollectorRegistry(), settings.max_metric_spaces)
        self._http: asyncio.Server | None = None
        self._loaded = False  # start() has hosted the registry's spaces

    # -- wiring ------------------------------------------------------------

    async def _on_query(self, msg: Msg) -> None:
        """``spaces.<id>.q.<name>``: answer in a task of its own (bounded), so a query
        waiting for its ``min_seq`` never holds up the others."""
        parts = msg.subject.split(".")
        if not msg.reply:
            return
        if len(parts) != 4 or parts[3] not in _QUERIES:
            known = ", ".join(sorted(_QUERIES))
            reply = error_reply(404, "Unknown query", f"{msg.subject!r}: known queries: {known}")
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(reply).encode())
            return
        space, name = parts[1], cast(QueryName, parts[3])

        async def respond() -> None:
            async with self._query_slots:
                reply = await self.handle(space, name, msg.data)
                if len(reply) > self.nc.max_payload:
                    log.warning(
                        "space %s: %s answer of %d bytes is over max_payload (%d)",
                        space,
                        name,
                        len(reply),
                        self.nc.max_payload,
                    )
                    reply = json.dumps(
                        error_reply(
                            400,
                            "Answer too large",
                            f"the answer is {len(reply)} bytes, more than NATS carries in "
                            f"one message ({self.nc.max_payload}); ask for fewer results "
                            "(k, limit) or leave out embeddings",
                        )
                    ).encode()
                with contextlib.suppress(Exception):  # the requester may be gone
                    await msg.respond(reply)

        task = asyncio.create_task(respond())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def _reply_budget(self) -> int:
        return self.nc.max_payload - 4096  # room for the reply's headers

    @property
    def registry(self) -> SpaceRegistry:
        assert self._registry is not None, "Worker.start() first"
        return self._registry

    @property
    def snapshots(self) -> SnapshotStore:
        assert self._snapshots is not None, "Worker.start() first"
        return self._snapshots

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "Worker.start() first"
        return self._nc

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics, /health and /ready are served on (None: not served)."""
        if self._http is None or not self._http.sockets:
            return None
        return int(self._http.sockets[0].getsockname()[1])

    async def start(self) -> None:
        await self._start_http()
        self._nc = await connect(self.settings.nats_url, f"engram-worker-{self.settings.worker_id}")
        js = self.nc.jetstream()
        self._registry = SpaceRegistry(js, replicas=self.settings.stream_replicas)
        await self.registry.open()
        self._snapshots = SnapshotStore(js, replicas=self.settings.stream_replicas)
        await self.snapshots.open()
        self.registry.on_change(self._on_registry_change)
        await self.registry.start_watch()
        await self.registry.wait_loaded()
        # one space's broken snapshot or stream never keeps the others from loading
        await asyncio.gather(
            *(self._host_quietly(rec.id) for rec in self.registry.cached_all()),
        )
        # plain nats-py: a FastStream subscriber added ~0.6 ms to every query here
        await self.nc.subscribe("spaces.*.q.*", queue=QUERY_QUEUE, cb=self._on_query)
        await self.nc.subscribe(RELOAD_SUBJECT, cb=self._on_reload)
        await self.nc.subscribe(STATUS_SUBJECT, cb=self._on_status)
        await self.nc.flush()  # ready means the server routes queries here
        self._spawn(self._sweep_loop())
        self._spawn(self._metrics_loop())
        self._loaded = True
        log.info(
            "worker %s: hosting %d spaces%s",
            self.settings.worker_id,
            len(self.hosts),
            f"; failed to load: {', '.join(sorted(self.failed))}" if self.failed else "",
        )

    async def stop(self) -> None:
        """Graceful stop: every hosted space writes a snapshot if it changed."""
        if self._registry is not None:
            await self._registry.close()
        for task in list(self._background):
            task.cancel()
        if self._http is not None:
            self._http.close()
            self._http = None
        hosts = list(self.hosts.values())
        self.hosts.clear()
        await asyncio.gather(*(h.stop(snapshot=True) for h in hosts), return_exceptions=True)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()

    async def _on_registry_change(self, space: str, rec: SpaceRecord | None) -> None:
        host = self.hosts.get(space)
        if host is not None and (
            rec is None or rec.status != "active" or rec.created_at != host.record.created_at
        ):
            # deleted, being deleted, or deleted and created again: drop the old state
            del self.hosts[space]
            host.retired = True
            await host.stop()
            host = None
            self.metrics.spaces.forget(space)  # a new incarnation starts from zero
        if rec is None or rec.status == "deleting":
            self.failed.pop(space, None)
            self.metrics.spaces.forget(space)
            try:
                await self.snapshots.erase(space)
            except Exception:
                log.exception("space %s: could not erase its snapshot", space)
            try:
                await purge_events(self.nc.jetstream(), space)
            except Exception:
                log.exception("space %s: could not purge its events", space)
        wanted = rec is not None and rec.status == "active"
        if wanted and host is None and space not in self._loading:
            self._spawn(self._host_quietly(space))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _host_quietly(self, space: str) -> None:
        with contextlib.suppress(QueryFailed):  # logged and kept in self.failed
            await self.ensure_host(space)

    async def _sweep_loop(self) -> None:
        """Erase snapshot chunks a crashed writer left behind, now and then."""
        while True:
            try:
                await self.snapshots.sweep(min_age=600)
            except Exception:
                log.exception("snapshot sweep failed")
            await asyncio.sleep(600)

    # -- metrics and probes ------------------------------------------------

    def refresh_gauges(self) -> None:
        """Set the per-space gauges from the hosted spaces. Spaces past the label
        cap share ``__other__``: their memories, lag, index bytes and erase backlog add up, the
        applied seq and snapshot age are the largest."""
        m, now = self.metrics, time.time()
        totals: dict[str, list[float]] = {}
        for space, host in list(self.hosts.items()):
            host.drain_counts(m)
            label = m.spaces.label(space)
            age = -1.0 if host.snapshot_at is None else max(0.0, now - host.snapshot_at)
            row = [
                len(host.state),
                host.state.applied_seq,
                host.wal_lag,
                age,
                host.index_memory_bytes(),
                host.erase_backlog,
            ]
            old = totals.get(label)
            if old is None or label != OTHER:
                totals[label] = [float(v) for v in row]
            else:
                totals[label] = [
                    old[0] + row[0],
                    max(old[1], row[1]),
                    old[2] + row[2],
                    max(old[3], row[3]),
                    old[4] + row[4],
                    old[5] + row[5],
                ]
        for label, (memories, applied, lag, age, index_bytes, erasing) in totals.items():
            m.spaces.gauge(m.memories, label).set(memories)
            m.spaces.gauge(m.applied_seq, label).set(applied)
            m.spaces.gauge(m.wal_lag, label).set(lag)
            if age >= 0:
                m.spaces.gauge(m.snapshot_age, label).set(age)
            m.spaces.gauge(m.index_bytes, label).set(index_bytes)
            m.spaces.gauge(m.erase_pending, label).set(erasing)

    async def _metrics_loop(self) -> None:
        while True:
            try:
                self.refresh_gauges()
            except Exception:
                log.exception("refreshing the metrics failed")
            await asyncio.sleep(METRICS_REFRESH)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready: NATS connected, the registry loaded, its spaces hosted and none
        stuck. A space catching up (replaying) is listed under ``behind`` with its
        lag and does not make the worker unready; one behind whose fold has not
        moved for ``stuck_after`` seconds is listed under ``stuck`` and does."""
        nats_ok = self._nc is not None and bool(self._nc.is_connected)
        registry_ok = self._registry is not None and self._registry.loaded.is_set()
        now = time.monotonic()
        behind: dict[str, int] = {}
        stuck: dict[str, dict[str, float]] = {}
        for sid, h in sorted(self.hosts.items()):
            lag = h.wal_lag
            if lag <= 0:
                continue
            behind[sid] = lag
            idle = now - h.progress_at
            if idle > self.settings.stuck_after:
                stuck[sid] = {"lag": lag, "no_progress_s": round(idle, 1)}
        ok = nats_ok and registry_ok and self._loaded and not stuck
        body: dict[str, Any] = {
            "status": "ready" if ok else "not ready",
            "worker": self.settings.worker_id,
            "nats_connected": nats_ok,
            "registry_loaded": registry_ok,
            "spaces_loaded": self._loaded,
            "hosted": len(self.hosts),
            "behind": behind,
            "stuck": stuck,
            "loading": sorted(self._loading),
            "failed": dict(sorted(self.failed.items())),
        }
        return ok, body

    def _http_answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET\n"
        if path == "/metrics":
            self.refresh_gauges()
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        if path == "/health":
            return 200, "application/json", b'{"status": "ok"}'
        if path == "/ready":
            ok, body = self.readiness()
            return 200 if ok else 503, "application/json", json.dumps(body).encode()
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /health, /ready\n"

    async def _on_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One HTTP/1.x request per connection (what Prometheus and probes send)."""
        try:
            line = await asyncio.wait_for(reader.readline(), 10.0)
            while True:  # the headers: not needed
                header = await asyncio.wait_for(reader.readline(), 10.0)
                if header in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            if len(parts) < 2:
                return
            method, path = parts[0].upper(), parts[1].split("?", 1)[0]
            try:
                status, ctype, body = self._http_answer(method, path)
            except Exception as exc:
                log.exception("metrics endpoint %s failed", path)
                status, ctype, body = 503, "text/plain; charset=utf-8", repr(exc).encode()
            head = (
                f"HTTP/1.1 {status} {_HTTP_REASONS.get(status, '')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(head if method == "HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _start_http(self) -> None:
        port = self.settings.metrics_port
        if not port:
            return
        try:
            self._http = await asyncio.start_server(
                self._on_http, self.settings.metrics_host, port, reuse_address=True
            )
        except OSError as exc:  # the worker still serves its spaces
            log.error(
                "worker %s: cannot serve /metrics on %s:%d: %s",
                self.settings.worker_id,
                self.settings.metrics_host,
                port,
                exc,
            )
            return
        log.info(
            "worker %s: metrics on http://%s:%d/metrics",
            self.settings.worker_id,
            self.settings.metrics_host,
            port,
        )

    def status(self, space: str | None = None) -> WorkerStatus:
        """What this worker hosts (position, counts, snapshot, how it recovered)
        and which spaces it could not load, and why."""
        hosted = [
            HostedSpace(
                id=sid,
                applied_seq=host.state.applied_seq,
                memories=len(host.state),
                rejected=host.state.rejected,
                snapshot_seq=host.snapshot_seq,
                snapshot_at=None
                if host.snapshot_at is None
                else datetime.fromtimestamp(host.snapshot_at, UTC),
                recovery=host.recovery,
            )
            for sid, host in sorted(self.hosts.items())
            if space is None or sid == space
        ]
        failed = [
            FailedSpace(id=sid, reason=reason)
            for sid, reason in sorted(self.failed.items())
            if space is None or sid == space
        ]
        return WorkerStatus(worker=self.settings.worker_id, spaces=hosted, failed=failed)

    async def _on_status(self, msg: Msg) -> None:
        """``engram.ctl.status``: every worker answers (``GET /api/v1/status``)."""
        if not msg.reply:
            return
        try:
            req = StatusRequest.model_validate_json(msg.data or b"{}")
            reply = self.status(req.space).model_dump_json().encode()
        except ValidationError as exc:
            reply = json.dumps(error_reply(400, "Invalid status request", str(exc))).encode()
        with contextlib.suppress(Exception):
            await msg.respond(reply)

    async def _on_reload(self, msg: Msg) -> None:
        """``engram.ctl.reload``: load a hosted space again from its (new) snapshot."""
        try:
            req = ReloadRequest.model_validate_json(msg.data)
        except ValidationError:
            return
        old = self.hosts.get(req.space)
        if old is None:  # whoever loads it next reads the new snapshot
            if msg.reply:
                absent = ReloadReply(worker=self.settings.worker_id, space=req.space, hosted=False)
                with contextlib.suppress(Exception):
                    await msg.respond(absent.model_dump_json().encode())
            return
        try:
            host = await self._start_host(old.record)
            # serve the new state once it has caught up with the old (bounded)
            with contextlib.suppress(NotCaughtUp):
                await host.wait_applied(old.state.applied_seq, self.settings.apply_wait_timeout)
        except Exception as exc:
            log.exception("space %s: reload failed; keeping the current state", req.space)
            reply = error_reply(500, "Reload failed", repr(exc))
        else:
            if self.hosts.get(req.space) is old:
                self.hosts[req.space] = host
                old.retired = True  # the new state's snapshots win
                await old.stop()
            else:  # deleted or replaced meanwhile
                await host.stop()
            reply = ReloadReply(
                worker=self.settings.worker_id,
                space=req.space,
                hosted=True,
                recovery=host.recovery,
                applied_seq=host.state.applied_seq,
                memories=len(host.state),
            ).model_dump(mode="json")
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(reply).encode())

    async def ensure_host(self, space: str) -> SpaceHost:
        """The host of ``space``, loading it first if needed (concurrent callers share
        one load). Raises :class:`QueryFailed` (404) for unknown spaces."""
        host = self.hosts.get(space)
        if host is not None:
            return host
        task = self._loading.get(space)
        if task is None:
            task = asyncio.create_task(self._load(space))
            self._loading[space] = task
            task.add_done_callback(lambda _: self._loading.pop(space, None))
        return await asyncio.shield(task)

    async def _load(self, space: str) -> SpaceHost:
        rec = self.registry.cached(space)
        if rec is None or rec.status != "active":
            # not known here, or a deleted space's record while the watcher has yet
            # to deliver its re-creation: the KV is the authority
            rec = await self.registry.get(space)
        if rec is None or rec.status != "active":
            raise QueryFailed(404, "Space not found", f"memory space {space!r} does not exist")
        try:
            host = await self._start_host(rec)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.failed[space] = reason
            log.error("space %s: failed to load: %s", space, reason)
            raise QueryFailed(
                503, "Space unavailable", f"memory space {space!r} failed to load: {reason}"
            ) from exc
        self.failed.pop(space, None)
        self.hosts[space] = host
        return host

    async def _start_host(self, rec: SpaceRecord) -> SpaceHost:
        host = SpaceHost(rec, self.nc, self.nc.jetstream(), self.settings, self.snapshots)
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

    # -- queries -----------------------------------------------------------

    async def handle(self, space: str, name: QueryName, data: bytes) -> bytes:
        """Answer one query; every failure becomes an ``{"error": …}`` reply."""
        try:
            return await self._answer(space, name, data)
        except QueryFailed as exc:
            return json.dumps(error_reply(exc.status, exc.title, exc.detail)).encode()
        except NotCaughtUp as exc:
            return json.dumps(error_reply(504, "Not caught up", str(exc))).encode()
        except Exception as exc:
            log.exception("space %s: query %s failed", space, name)
            return json.dumps(error_reply(500, "Query failed", repr(exc))).encode()

    async def _wait(self, host: SpaceHost, min_seq: int | None) -> None:
        if min_seq:
            await host.wait_applied(min_seq, self.settings.apply_wait_timeout)

    async def _answer(self, space: str, name: QueryName, data: bytes) -> bytes:
        host = await self.ensure_host(space)
        answer = {
            "recall": self._recall,
            "get": self._get,
            "list": self._list,
            "stats": self._stats,
            "consolidate": self._consolidate,
            "export": self._export,
        }[name]
        return await answer(host, data or b"{}")

    async def _recall(self, host: SpaceHost, data: bytes) -> bytes:
        req = _parse(RecallRequest, data, host.space)
        started = time.perf_counter()
        try:
            return await self._recall_parsed(host, req)
        finally:
            if not host.retired:  # a deleted space's series stay removed
                self.metrics.recall(host.space, req.mode, time.perf_counter() - started)

    async def _recall_parsed(self, host: SpaceHost, req: RecallRequest) -> bytes:
        state = host.state
        min_seq = req.min_seq
        if req.consistency == "strong":
            min_seq = max(min_seq or 0, await host.stream_last_seq())
        elif req.consistency == "eventual":
            min_seq = None
        await self._wait(host, min_seq)
        if req.embedding is not None:
            cue = np.asarray(req.embedding, dtype=np.float32)
            if cue.shape != (state.dim,):
                raise QueryFailed(
                    400,
                    "Invalid query",
                    f"embedding: expected {state.dim} values (the space's dim), got {cue.shape[0]}",
                )
        else:
            assert req.query is not None
            cue = state.embed_query(req.query)
        query, now = RecallQuery.of(req), time.time()
        results = await host.with_index(lambda st: st.recall(cue, req.k, query, now))
        if req.reinforce:
            host.reinforce([r.memory.id for r in results])
        return _dump(
            RecallResponse(space=host.space, applied_seq=state.applied_seq, results=results)
        )

    async def _consolidate(self, host: SpaceHost, data: bytes) -> bytes:
        req = _parse(ConsolidateRequest, data, host.space)
        await self._wait(host, req.min_seq)
        groups, seq = await host.consolidate(dry_run=req.dry_run)
        return _dump(
            ConsolidateResponse(
                space=host.space, applied_seq=host.state.applied_seq, groups=groups, seq=seq
            )
        )

    async def _get(self, host: SpaceHost, data: bytes) -> bytes:
        req = _parse(GetRequest, data, host.space)
        await self._wait(host, req.min_seq)
        rec = host.state.get(req.memory_id)
        if rec is None:
            raise QueryFailed(
                404,
                "Memory not found",
                f"memory {req.memory_id!r} does not exist in space {host.space!r}",
            )
        memory = await host.with_index(lambda st: st.to_memory(rec, req.include_embedding))
        return _dump(
            GetResponse(space=host.space, applied_seq=host.state.applied_seq, memory=memory)
        )

    async def _list(self, host: SpaceHost, data: bytes) -> bytes:
        req = _parse(ListRequest, data, host.space)
        await self._wait(host, req.min_seq)
        try:
            after = int(req.cursor) if req.cursor else 0
        except ValueError:
            raise QueryFailed(
                400, "Invalid query", f"cursor: {req.cursor!r} is not a cursor from this API"
            ) from None

        def page(st: SpaceState) -> tuple[list[StoredMemory], int | None, list[Memory], int]:
            recs, nxt = st.page(after, req.limit)
            memories = [st.to_memory(r, req.include_embedding) for r in recs]
            return recs, nxt, memories, st.applied_seq

        recs, nxt, memories, applied = await host.with_index(page)
        # a reply must fit in one NATS message: a page too big is cut short, and its
        # cursor continues right after the last memory it holds
        while True:
            body = _dump(
                ListResponse(
                    space=host.space,
                    applied_seq=applied,
                    memories=memories,
                    next_cursor=None if nxt is None else str(nxt),
                )
            )
            if len(body) <= self._reply_budget or len(memories) <= 1:
                return body
            keep = max(1, min(len(memories) - 1, len(memories) * self._reply_budget // len(body)))
            memories, nxt = memories[:keep], recs[keep - 1].seq

    async def _export(self, host: SpaceHost, data: bytes) -> bytes:
        """A page of the space's memories as an export carries them (stream order),
        cut short to fit in one NATS message; ``next_cursor`` continues after it."""
        req = _parse(ExportRequest, data, host.space)
        await self._wait(host, req.min_seq)
        try:
            after = int(req.cursor) if req.cursor else 0
        except ValueError:
            raise QueryFailed(
                400, "Invalid query", f"cursor: {req.cursor!r} is not a cursor from this API"
            ) from None

        def page(st: SpaceState) -> tuple[list[tuple[int, bytes]], int | None, int]:
            items, nxt = export_page(st, after, req.limit, req.tags)
            return [(it.record.seq, _exported(st, it)) for it in items], nxt, st.applied_seq

        lines, nxt, applied = await host.with_index(page)
        # the reply must fit in one NATS message: stop before the memory that would
        # not fit (always at least one), and continue right after the last one kept
        head = b'{"space":%s,"applied_seq":%d,"memories":[' % (
            json.dumps(host.space).encode(),
            applied,
        )
        size, kept = len(head) + 64, 0
        for _, line in lines:
            if kept and size + len(line) + 1 > self._reply_budget:
                nxt = lines[kept - 1][0]
                break
            size += len(line) + 1
            kept += 1
        cursor = b"null" if nxt is None else json.dumps(str(nxt)).encode()
        return (
            head + b",".join(line for _, line in lines[:kept]) + b'],"next_cursor":' + cursor + b"}"
        )

    async def _stats(self, host: SpaceHost, data: bytes) -> bytes:
        req = _parse(StatsRequest, data, host.space)
        await self._wait(host, req.min_seq)
        state = host.state
        return _dump(
            StatsResponse(
                space=host.space,
                memories=len(state),
                applied_seq=state.applied_seq,
                rejected=state.rejected,
                snapshot_seq=host.snapshot_seq,
                snapshot_at=(
                    None
                    if host.snapshot_at is None
                    else datetime.fromtimestamp(host.snapshot_at, UTC)
                ),
                recovery=host.recovery,
                worker=self.settings.worker_id,
            )
        )


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], data: bytes, space: str) -> M:
    """A query request for ``space`` (its subject's); a request whose
    ``memory_space_id`` names another space is refused."""
    try:
        req = model.model_validate_json(data)
    except ValidationError as exc:
        raise _invalid(exc) from None
    why = wrong_space(getattr(req, "memory_space_id", None), space)
    if why is not None:
        raise QueryFailed(400, "Wrong memory space", why)
    return req


def _exported(state: SpaceState, item: ExportItem) -> bytes:
    """One memory of an export as JSON (the vector as base64 of float32)."""
    rec = item.record
    vec = state.indexing.vector(rec.key)
    memory = ExportedMemory.model_construct(
        id=rec.id,
        content=rec.content,
        embedding_b64=None if vec is None else encode_embedding(vec),
        confidence=rec.confidence,
        tags=rec.tags,
        metadata=rec.metadata,
        occurred_at=rec.occurred_at,
        kind=cast(MemoryKind, rec.kind),
        members=item.members,
        links=[ExportLink(target=t, weight=w, kind=k) for t, w, k in item.links],
        created_at=rec.created_at,
        seq=rec.seq,
        recalls=rec.recalls,
        last_recall=rec.last_recall,
    )
    return memory.model_dump_json(exclude_none=True, exclude_defaults=False).encode()


def _dump(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


async def main(settings: WorkerSettings, stop: asyncio.Event | None = None) -> None:
    """Run a worker until ``stop`` is set (or SIGINT/SIGTERM)."""
    import signal

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    worker = Worker(settings)
    await worker.start()
    print(f"engram worker {settings.worker_id} ready on {settings.nats_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await worker.stop()
