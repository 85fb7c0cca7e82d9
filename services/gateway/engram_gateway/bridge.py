"""The gateway's side of NATS: the shared :class:`MemoryService` (publish
commands into WALs, forward queries) configured from the gateway's settings,
plus the status report."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import nats.js.errors
from nats.aio.client import Client

from engram_contract.errors import Unavailable, field_error, space_not_found
from engram_contract.messages import (
    ConsolidateRequest,
    ConsolidateResponse,
    SpaceStatusRow,
    StatusRequest,
    StatusResponse,
    WorkerStatus,
    WorkerSummary,
)
from engram_contract.settings import GatewaySettings
from engram_contract.subjects import STATUS_SUBJECT, stream_name
from engram_gateway.processes import SharedAckedSeqs
from engram_nats import wire
from engram_nats.connection import gather
from engram_nats.membership import Membership
from engram_nats.registry import SpaceRegistry, cluster_state
from engram_nats.service import MemoryService
from engram_nats.snapshots import SnapshotBucket
from engram_nats.spaces import SpacePolicy

CREATE_HINT = "Create it with POST /api/v1/spaces or write a memory to it."


class NatsBridge(MemoryService):
    """The memory operations for HTTP clients, with the gateway's settings.

    Remembers the highest acknowledged stream sequence per space (``acked``),
    which is the ``min_seq`` of read-your-writes queries through this gateway: in
    this process, or shared by all the gateway's processes when it runs several.
    """

    def __init__(
        self,
        nc: Client,
        registry: SpaceRegistry,
        settings: GatewaySettings,
        membership: Membership | None = None,
    ) -> None:
        policy = SpacePolicy(
            default_dim=settings.default_dim,
            default_embedder=settings.default_embedder,
            auto_create=settings.auto_create_spaces,
            max_spaces=settings.max_spaces,
            default_max_memories=settings.space_max_memories,
            default_max_bytes=settings.space_max_bytes,
            create_hint=CREATE_HINT,
        )
        super().__init__(
            nc,
            registry,
            policy,
            publish_timeout=settings.publish_timeout,
            query_timeout=settings.query_timeout,
            membership=membership,
            space_replicas=settings.space_replicas,
        )
        shared = SharedAckedSeqs.open_shared()
        if shared is not None:  # one of several gateway processes (see processes.py)
            self.acked = shared
            registry.on_change(shared.on_space_change)
        self.settings = settings
        self._snapshots: SnapshotBucket | None = None  # opened by the first status

    @property
    def healthy(self) -> str | None:
        """Why the gateway cannot serve (``None``: it can): NATS disconnected, or
        the registry watch stopped."""
        if not self.nc.is_connected:
            return "the gateway is not connected to NATS"
        if not self.registry.watching:
            return "the gateway's space registry watch is not running"
        return None

    async def check_min_seq(self, space: str, min_seq: int | None) -> None:
        """A ``min_seq`` a client sends must be a sequence the space's WAL has: one
        beyond its last could only be waited for until the apply timeout (a 504), so
        it is a 400 now. Asked of JetStream only when a client sends one."""
        if not min_seq:
            return
        try:
            info = await self.js.stream_info(stream_name(space))
        except nats.js.errors.NotFoundError:
            raise space_not_found(space) from None
        last = int(info.state.last_seq)
        if min_seq > last:
            raise field_error(
                "min_seq",
                f"{min_seq} is beyond the last sequence of space {space!r}'s WAL ({last}): "
                "no write has it yet",
                hint="Send a seq a write answered with, or leave min_seq out.",
            )

    async def consolidate(self, space: str, request: ConsolidateRequest) -> bytes:
        """The worker's ``ConsolidateResponse`` (HTTP and gRPC): after this gateway's
        writes; the commands it wrote count as this gateway's (read-your-writes)."""
        await self.spaces.for_write(space, create=False)
        await self.check_min_seq(space, request.min_seq)
        if request.min_seq is None:
            request = request.model_copy(update={"min_seq": self.acked.get(space)})
        data = await self.query(space, "consolidate", request)
        seq = ConsolidateResponse.model_validate_json(data).seq
        if seq is not None:  # the worker wrote into the WAL on this gateway's behalf
            self.acked.note(space, seq)
        return data

    # -- status --------------------------------------------------------------

    async def status(self, space: str | None = None) -> StatusResponse:
        """Every space (or one) with its WAL position and what the workers report:
        the hosting worker's position, counts and snapshot, or why none could load it."""
        recs = [r for r in self.registry.cached_all() if space is None or r.id == space]
        if space is not None and not recs:
            raise space_not_found(space)
        request = StatusRequest(space=space).model_dump_json(exclude_none=True).encode()
        try:
            answers, infos = await asyncio.gather(
                gather(self.nc, STATUS_SUBJECT, request, wait=self.settings.query_timeout),
                asyncio.gather(
                    *(self.js.stream_info(stream_name(r.id)) for r in recs),
                    return_exceptions=True,
                ),
            )
        except wire.UNREACHABLE:
            raise Unavailable(
                503,
                "NATS unavailable",
                "the gateway cannot reach NATS to collect the status",
                retry_after=wire.RETRY_AFTER,
            ) from None
        workers: list[WorkerStatus] = []
        for data in answers:
            with contextlib.suppress(ValueError):
                workers.append(WorkerStatus.model_validate_json(data))
        rows = []
        for rec, info in zip(recs, infos, strict=True):
            stream_seq = None if isinstance(info, BaseException) else int(info.state.last_seq)
            wal_bytes = None if isinstance(info, BaseException) else int(info.state.bytes)
            # its hosts, primary first (then the most advanced)
            hosts = sorted(
                ((w.worker, h) for w in workers for h in w.spaces if h.id == rec.id),
                key=lambda wh: (not wh[1].primary, -wh[1].applied_seq, wh[0]),
            )
            failures = [
                f"{w.worker}: {f.reason}" for w in workers for f in w.failed if f.id == rec.id
            ]
            row: dict[str, Any] = {
                "id": rec.id,
                "status": rec.status,
                "stream_seq": stream_seq,
                "wal_bytes": wal_bytes,
                "max_memories": rec.max_memories,
                "max_bytes": rec.max_bytes,
                "failed": None if hosts or not failures else "; ".join(failures),
                "hosts": [w for w, _ in hosts],
                "loaded": True if hosts else None,
                "under_replicated": rec.status == "active"
                and len(hosts) < self.settings.space_replicas,
            }
            cold = sorted(w.worker for w in workers if rec.id in w.cold)
            if cold and not hosts:
                row |= {"hosts": cold, "loaded": False}
                row["under_replicated"] = len(cold) < self.settings.space_replicas
            elif cold:
                row["hosts"] += cold
                row["under_replicated"] = len(row["hosts"]) < self.settings.space_replicas
            if hosts:
                worker, h = hosts[0]
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
                    row |= await self._unhosted(rec.id, stream_seq, cold)
                if cold:
                    row["worker"] = cold[0]
            rows.append(SpaceStatusRow.model_validate(row))
        placement = [
            WorkerSummary(
                worker=w.worker, hosted=w.hosted, loaded=w.loaded, index_bytes=w.index_bytes
            )
            for w in sorted(workers, key=lambda w: w.worker)
        ]
        try:
            cluster = await cluster_state(self.js)
        except Exception:  # the status reports what it can
            cluster = None
        return StatusResponse(
            spaces=rows,
            workers=sorted(w.worker for w in workers),
            placement=placement,
            nats_cluster=cluster,
        )

    async def _unhosted(
        self, space: str, stream_seq: int, cold: list[str] | None = None
    ) -> dict[str, Any]:
        """What a space no worker holds in memory looks like from its newest
        snapshot: the position a worker would start from, so ``wal_lag`` is what it
        would have to fold (every message, with no snapshot) and grows with each
        write meanwhile. ``cold``: the workers that serve it and load it on use."""
        if self._snapshots is None:
            bucket = SnapshotBucket(self.js, replicas=self.settings.stream_replicas)
            await bucket.open()
            self._snapshots = bucket
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
        start = f"the snapshot at seq {snapshot_seq}" if info is not None else "the WAL from seq 1"
        if cold:
            recovery = f"cold: {cold[0]} loads it on its next query or write, from {start}"
        else:
            recovery = (
                f"no worker hosts it: a worker would {'restore' if info else 'replay'} {start}"
            )
        return {
            "wal_lag": max(0, stream_seq - snapshot_seq),
            "snapshot_seq": snapshot_seq,
            "snapshot_age_s": age,
            "memories": header("Engram-Memories") if info is not None else None,
            "recovery": recovery,
        }
