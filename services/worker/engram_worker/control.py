"""The worker's control subjects: ``engram.ctl.status`` (what every worker hosts,
for ``GET /api/v1/status``), ``engram.ctl.reload`` (load a hosted space again
from its new snapshot) and ``engram.ctl.serving.<worker id>`` (which spaces it
serves, asked during a handover)."""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from pydantic import ValidationError

from engram_contract.messages import (
    FailedSpace,
    HostedSpace,
    ReloadReply,
    ReloadRequest,
    StatusRequest,
    WorkerStatus,
    error_reply,
)
from engram_contract.subjects import STREAM_PREFIX
from engram_worker.wal_consumer import NotCaughtUp

if TYPE_CHECKING:
    from engram_worker.worker import Worker

log = logging.getLogger(__name__)


def status(worker: Worker, space: str | None = None) -> WorkerStatus:
    """What this worker hosts (position, counts, snapshot, how it recovered)
    and which spaces it could not load, and why."""
    hosted = [
        HostedSpace(
            id=sid,
            applied_seq=host.state.applied_seq,
            memories=len(host.state),
            rejected=host.state.rejected,
            snapshot_seq=host.snapshotter.snapshot_seq,
            snapshot_at=None
            if host.snapshotter.snapshot_at is None
            else datetime.fromtimestamp(host.snapshotter.snapshot_at, UTC),
            recovery=host.snapshotter.recovery,
            primary=host.primary,
            loaded=True,
        )
        for sid, host in sorted(worker.hosting.hosts.items())
        if space is None or sid == space
        # a space being handed over away from here is reported by its new host
        if sid in worker.placement.serving or sid in worker.hosting.failed
    ]
    failed = [
        FailedSpace(id=sid, reason=reason)
        for sid, reason in sorted(worker.hosting.failed.items())
        if space is None or sid == space
    ]
    return WorkerStatus(
        worker=worker.settings.worker_id,
        spaces=hosted,
        failed=failed,
        cold=sorted(s for s in worker.placement.idle.cold if space is None or s == space),
        hosted=len(worker.placement.serving),
        loaded=len(worker.hosting.hosts),
        index_bytes=sum(h.index_memory_bytes() for h in worker.hosting.hosts.values()),
    )


async def on_status(worker: Worker, msg: Msg) -> None:
    """``engram.ctl.status``: every worker answers (``GET /api/v1/status``)."""
    if not msg.reply:
        return
    try:
        req = StatusRequest.model_validate_json(msg.data or b"{}")
        reply = status(worker, req.space).model_dump_json().encode()
    except ValidationError as exc:
        reply = json.dumps(error_reply(400, "Invalid status request", str(exc))).encode()
    with contextlib.suppress(Exception):
        await msg.respond(reply)


async def on_reload(worker: Worker, msg: Msg) -> None:
    """``engram.ctl.reload``: load a hosted space again from its (new) snapshot."""
    try:
        req = ReloadRequest.model_validate_json(msg.data)
    except ValidationError:
        return
    old = worker.hosting.hosts.get(req.space)
    if old is None:  # whoever loads it next reads the new snapshot
        if msg.reply:
            absent = ReloadReply(worker=worker.settings.worker_id, space=req.space, hosted=False)
            with contextlib.suppress(Exception):
                await msg.respond(absent.model_dump_json().encode())
        return
    try:
        host = await worker.hosting.start_host(old.record)
        # serve the new state once it has caught up with the old (bounded)
        with contextlib.suppress(NotCaughtUp):
            await host.wait_applied(old.state.applied_seq, worker.settings.apply_wait_timeout)
    except Exception as exc:
        log.exception("space %s: reload failed; keeping the current state", req.space)
        reply = error_reply(500, "Reload failed", repr(exc))
    else:
        if worker.hosting.hosts.get(req.space) is old:
            worker.hosting.hosts[req.space] = host
            old.retired = True  # the new state's snapshots win
            await old.stop()
        else:  # deleted or replaced meanwhile
            await host.stop()
        reply = ReloadReply(
            worker=worker.settings.worker_id,
            space=req.space,
            hosted=True,
            recovery=host.snapshotter.recovery,
            applied_seq=host.state.applied_seq,
            memories=len(host.state),
        ).model_dump(mode="json")
    if msg.reply:
        with contextlib.suppress(Exception):
            await msg.respond(json.dumps(reply).encode())


async def on_serving(worker: Worker, msg: Msg) -> None:
    """``engram.ctl.serving.<worker id>``: which of the asked spaces (a JSON list)
    this worker serves — how a worker handing a space over knows it may let go."""
    if not msg.reply:
        return
    try:
        asked = json.loads(msg.data)
        served = [s for s in asked if isinstance(s, str) and s in worker.placement.serving]
    except (ValueError, TypeError):
        served = []
    with contextlib.suppress(Exception):
        await msg.respond(json.dumps(served).encode())


async def on_stream_deleted(worker: Worker, msg: Msg) -> None:
    """``$JS.EVENT.ADVISORY.STREAM.DELETED.ENGRAM_SPACE_<id>``: a space's WAL
    stream was deleted (see :meth:`Hosting.wal_gone`)."""
    stream = msg.subject.rsplit(".", 1)[-1]
    if not stream.startswith(STREAM_PREFIX):
        return  # a bucket's or another application's stream
    space = stream.removeprefix(STREAM_PREFIX)
    try:
        await worker.hosting.wal_gone(space)
    except Exception:
        log.exception("space %s: handling its deleted WAL stream failed", space)
