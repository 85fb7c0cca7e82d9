"""The gateway's side of NATS: publish commands into WALs, forward queries."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from engram_contract.embedders import Embedder, get_embedder
from engram_contract.messages import (
    Command,
    Model,
    SpaceRecord,
    SpaceStatusRow,
    StatusRequest,
    StatusResponse,
    WorkerStatus,
)
from engram_contract.settings import GatewaySettings
from engram_contract.subjects import (
    STATUS_SUBJECT,
    CommandVerb,
    QueryName,
    command_subject,
    query_subject,
    stream_name,
)
from engram_gateway.problems import Problem
from engram_nats.connection import gather
from engram_nats.registry import SpaceConflict, SpaceLimitReached, SpaceRegistry
from engram_nats.streams import purge_events
from engram_worker.snapshots import SnapshotStore

_NO_RESPONDERS_BACKOFF = (0.02, 0.05, 0.1, 0.2, 0.4)


class NatsBridge:
    """Publishes commands (waiting for PubAcks) and requests queries.

    Remembers the highest acknowledged stream sequence per space, which is the
    ``min_seq`` of read-your-writes queries through this gateway.
    """

    def __init__(
        self, nc: Client, js: JetStreamContext, registry: SpaceRegistry, settings: GatewaySettings
    ) -> None:
        self.nc = nc
        self.js = js
        self.registry = registry
        self.settings = settings
        self.acked: dict[str, int] = {}
        self._snapshots: SnapshotStore | None = None  # opened by the first status
        self._embedders: dict[tuple[str, int], Embedder] = {}

    async def on_space_change(self, space: str, rec: SpaceRecord | None) -> None:
        """Registry listener: a deleted (or re-created) space starts from seq 0."""
        if rec is None or rec.status != "active":
            self.acked.pop(space, None)

    async def delete_space(self, space: str) -> None:
        """Mark the space deleting, then delete its stream and record."""
        rec = await self.registry.mark_deleting(space)
        if rec is None:
            raise Problem(404, "Space not found", f"memory space {space!r} does not exist")
        self.acked.pop(space, None)
        await self.registry.remove(space)
        # its events go too (workers purge again once they have stopped hosting
        # it, for events published in between)
        await purge_events(self.js, space)

    def embedder_for(self, rec: SpaceRecord) -> Embedder:
        """The space's embedder (one instance per name and dim)."""
        key = (rec.embedder, rec.dim)
        if key not in self._embedders:
            self._embedders[key] = get_embedder(rec.embedder, rec.dim)
        return self._embedders[key]

    # -- spaces --------------------------------------------------------------

    async def create_or_get(self, space: str, **asked: Any) -> tuple[SpaceRecord, bool]:
        s = self.settings
        try:
            return await self.registry.create_or_get(
                space,
                default_dim=s.default_dim,
                default_embedder=s.default_embedder,
                max_spaces=s.max_spaces,
                **asked,
            )
        except SpaceConflict as exc:
            raise Problem(
                409,
                "Space conflict",
                str(exc),
                hint="Use another space id, or omit the settings to get the existing space.",
            ) from None
        except SpaceLimitReached as exc:
            raise Problem(
                409,
                "Space limit reached",
                str(exc),
                hint="Delete unused spaces or raise ENGRAM_MAX_SPACES.",
            ) from None

    async def space_for_read(self, space: str) -> SpaceRecord:
        rec = self.registry.cached(space) or await self.registry.get(space)
        if rec is None or rec.status != "active":
            raise Problem(
                404,
                "Space not found",
                f"memory space {space!r} does not exist",
                hint="Create it with POST /api/v1/spaces or write a memory to it.",
            )
        return rec

    async def space_for_write(self, space: str, *, create: bool = True) -> SpaceRecord:
        """The record of an active space to write to. An unknown space is created
        (when ``create`` and ``ENGRAM_AUTO_CREATE_SPACES`` allow) or is a 404;
        ``create=False`` is for writes about memories that must exist already."""
        rec = self.registry.cached(space) or await self.registry.get(space)
        if rec is None:
            if not create:
                raise Problem(
                    404,
                    "Space not found",
                    f"memory space {space!r} does not exist",
                    hint="Create it with POST /api/v1/spaces or write a memory to it.",
                )
            if not self.settings.auto_create_spaces:
                raise Problem(
                    404,
                    "Space not found",
                    f"memory space {space!r} does not exist",
                    hint="Create it with POST /api/v1/spaces (ENGRAM_AUTO_CREATE_SPACES is off).",
                )
            rec, _ = await self.create_or_get(space)
        if rec.status != "active":
            raise Problem(409, "Space not writable", f"memory space {space!r} is {rec.status}")
        return rec

    # -- commands ------------------------------------------------------------

    async def publish(self, space: str, verb: CommandVerb, commands: Sequence[Command]) -> int:
        """Publish one WAL message per command, pipelined; return the last seq.

        Each message carries ``Nats-Msg-Id = command_id``: a retry with the same
        ids inside the duplicate window is acknowledged without being stored twice.
        """
        return await self.publish_raw(
            space,
            (
                (verb, cmd.command_id, cmd.model_dump_json(exclude_none=True).encode())
                for cmd in commands
            ),
        )

    async def publish_raw(
        self, space: str, messages: Iterable[tuple[CommandVerb, str, bytes]]
    ) -> int:
        """Publish ``(verb, command_id, body)`` messages in order, pipelined (bodies
        already validated and encoded); return the last seq. As :meth:`publish`."""
        stream = stream_name(space)
        futures: list[asyncio.Future[Any]] = []
        try:
            for verb, command_id, body in messages:  # a failure part-way cancels the rest
                futures.append(
                    await self.js.publish_async(
                        command_subject(space, verb),
                        body,
                        headers={"Nats-Msg-Id": command_id},
                        stream=stream,
                    )
                )
            acks = await asyncio.wait_for(asyncio.gather(*futures), self.settings.publish_timeout)
        except (TimeoutError, nats.errors.TimeoutError, nats.js.errors.TooManyStalledMsgsError):
            for f in futures:
                f.cancel()
            raise Problem(
                503,
                "Not acknowledged",
                f"JetStream did not acknowledge the write to space {space!r} in time; "
                "some memories may be stored",
                hint="Retry with the same Idempotency-Key: stored memories are not duplicated.",
                headers={"Retry-After": "1"},
            ) from None
        except (
            nats.js.errors.NoStreamResponseError,
            nats.js.errors.APIError,
            nats.errors.ConnectionClosedError,
            nats.errors.OutboundBufferLimitError,  # reconnecting, and the buffer is full
        ) as exc:
            for f in futures:
                f.cancel()
            raise Problem(
                503,
                "Write failed",
                f"could not write to space {space!r}: {exc!r}",
                hint="Check that NATS is up; retry with the same Idempotency-Key.",
                headers={"Retry-After": "1"},
            ) from None
        last = max(int(a.seq) for a in acks)
        self.note_acked(space, last)
        return last

    def note_acked(self, space: str, seq: int) -> None:
        """Record a stream sequence known to be in ``space``'s WAL (written by this
        gateway, or by a worker on its behalf): read-your-writes queries wait for it."""
        if seq > self.acked.get(space, 0):
            self.acked[space] = seq

    # -- status --------------------------------------------------------------

    async def status(self, space: str | None = None) -> StatusResponse:
        """Every space (or one) with its WAL position and what the workers report:
        the hosting worker's position, counts and snapshot, or why none could load it."""
        recs = [r for r in self.registry.cached_all() if space is None or r.id == space]
        if space is not None and not recs:
            raise Problem(404, "Space not found", f"memory space {space!r} does not exist")
        request = StatusRequest(space=space).model_dump_json(exclude_none=True).encode()
        try:
            answers, infos = await asyncio.gather(
                gather(self.nc, STATUS_SUBJECT, request, wait=self.settings.query_timeout),
                asyncio.gather(
                    *(self.js.stream_info(stream_name(r.id)) for r in recs),
                    return_exceptions=True,
                ),
            )
        except (nats.errors.OutboundBufferLimitError, nats.errors.ConnectionClosedError):
            raise Problem(
                503,
                "NATS unavailable",
                "the gateway cannot reach NATS to collect the status",
                headers={"Retry-After": "1"},
            ) from None
        workers: list[WorkerStatus] = []
        for data in answers:
            with contextlib.suppress(ValueError):
                workers.append(WorkerStatus.model_validate_json(data))
        rows = []
        for rec, info in zip(recs, infos, strict=True):
            stream_seq = None if isinstance(info, BaseException) else int(info.state.last_seq)
            # the most advanced host answers (several workers may host a space)
            hosts = [(w.worker, h) for w in workers for h in w.spaces if h.id == rec.id]
            failures = [
                f"{w.worker}: {f.reason}" for w in workers for f in w.failed if f.id == rec.id
            ]
            row: dict[str, Any] = {
                "id": rec.id,
                "status": rec.status,
                "stream_seq": stream_seq,
                "failed": None if hosts or not failures else "; ".join(failures),
            }
            if hosts:
                worker, h = max(hosts, key=lambda wh: wh[1].applied_seq)
                age = (
                    None
                    if h.snapshot_at is None
                    else max(0.0, (datetime.now(UTC) - h.snapshot_at).total_seconds())
                )
                row |= {
                    "applied_seq": h.applied_seq,
                    "wal_lag": None if stream_seq is None else max(0, stream_seq - h.applied_seq),
                    "memories": h.memories,
                    "rejected": h.rejected,
                    "snapshot_seq": h.snapshot_seq,
                    "snapshot_age_s": None if age is None else round(age, 3),
                    "worker": worker,
                    "recovery": h.recovery,
                }
            else:
                row |= dict.fromkeys(
                    (
                        "applied_seq",
                        "wal_lag",
                        "memories",
                        "rejected",
                        "snapshot_seq",
                        "snapshot_age_s",
                        "worker",
                        "recovery",
                    )
                )
                if stream_seq is not None and rec.status == "active":
                    row |= await self._unhosted(rec.id, stream_seq)
            rows.append(SpaceStatusRow.model_validate(row))
        return StatusResponse(spaces=rows, workers=sorted(w.worker for w in workers))

    async def _unhosted(self, space: str, stream_seq: int) -> dict[str, Any]:
        """What a space no worker hosts looks like from its newest snapshot: the
        position a worker would start from, so ``wal_lag`` is what it would have to
        fold (every message, with no snapshot) and grows with each write meanwhile."""
        if self._snapshots is None:
            store = SnapshotStore(self.js, replicas=self.settings.stream_replicas)
            await store.open()
            self._snapshots = store
        try:
            info = await self._snapshots.info(space)
        except Exception:  # the status reports what it can
            info = None
        headers = (info.headers or {}) if info is not None else {}

        def header(name: str) -> int | None:
            values = headers.get(name) or []
            try:
                return int(values[0]) if values else None
            except (TypeError, ValueError):
                return None

        snapshot_seq = header("Engram-Applied-Seq") or 0
        age = None
        if info is not None and info.mtime:
            with contextlib.suppress(ValueError):
                written = datetime.fromisoformat(info.mtime)
                age = round(max(0.0, (datetime.now(UTC) - written).total_seconds()), 3)
        return {
            "wal_lag": max(0, stream_seq - snapshot_seq),
            "snapshot_seq": snapshot_seq,
            "snapshot_age_s": age,
            "memories": header("Engram-Memories") if info is not None else None,
            "recovery": (
                f"no worker hosts it: a worker would restore the snapshot at seq {snapshot_seq}"
                if info is not None
                else "no worker hosts it: a worker would replay the WAL from seq 1"
            ),
        }

    # -- queries -------------------------------------------------------------

    async def _request(self, subject: str, payload: bytes) -> Msg:
        """A request, retried for about a second while nobody answers: a worker
        that is starting (or has just subscribed) can miss a request by a few ms."""
        for delay in _NO_RESPONDERS_BACKOFF:
            try:
                return await self.nc.request(subject, payload, timeout=self.settings.query_timeout)
            except nats.errors.NoRespondersError:
                await asyncio.sleep(delay)
        return await self.nc.request(subject, payload, timeout=self.settings.query_timeout)

    async def query(self, space: str, name: QueryName, body: Model | dict[str, Any]) -> bytes:
        """Request a query from the worker hosting ``space``; return the raw JSON reply.
        Worker errors become :class:`Problem` with the worker's status and detail."""
        payload = (
            body.model_dump_json(exclude_none=True).encode()
            if isinstance(body, Model)
            else json.dumps(body).encode()
        )
        try:
            msg = await self._request(query_subject(space, name), payload)
        except (nats.errors.OutboundBufferLimitError, nats.errors.ConnectionClosedError):
            raise Problem(
                503,
                "NATS unavailable",
                f"the gateway cannot reach NATS to ask about space {space!r}",
                hint="Retry shortly; check that NATS is up.",
                headers={"Retry-After": "1"},
            ) from None
        except nats.errors.NoRespondersError:
            raise Problem(
                503,
                "No worker",
                f"no worker is serving space {space!r} right now",
                hint="Start a worker (engram worker) or retry shortly.",
                headers={"Retry-After": "1"},
            ) from None
        except nats.errors.TimeoutError:
            raise Problem(
                504,
                "Worker timeout",
                f"the worker for space {space!r} did not answer in "
                f"{self.settings.query_timeout:g}s",
                hint="Retry; if it persists, check the worker's logs.",
            ) from None
        data = msg.data
        if data.startswith(b'{"error"'):
            err = json.loads(data)["error"]
            raise Problem(int(err["status"]), err["title"], err["detail"])
        return bytes(data)
