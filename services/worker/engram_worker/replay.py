"""``engram replay``: rebuild a space from its WAL alone, write a fresh snapshot and
have the hosting workers serve it.

The replay folds the stream through an ordered push consumer (the same fold the
worker runs, without events or erasures: the worker did those), indexes the
result in batches, writes a snapshot and asks every worker hosting the space to
load it again (``engram.ctl.reload``); they tail whatever arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from pydantic import ValidationError

from engram_contract.embedders import get_embedder
from engram_contract.messages import ReloadReply, ReloadRequest
from engram_contract.settings import WorkerSettings
from engram_contract.subjects import RELOAD_SUBJECT, command_verb, stream_name, wal_subjects
from engram_nats.connection import gather
from engram_nats.consumers import close_consumer, delete_msg
from engram_nats.registry import SpaceRegistry
from engram_worker.core.persistence import capture
from engram_worker.core.state import SpaceState
from engram_worker.positions import position, stored_at
from engram_worker.snapshots import SnapshotStore
from engram_worker.snapshotter import snapshot_header, write_snapshot

log = logging.getLogger(__name__)

# phase name, done, total
Progress = Callable[[str, int, int], None]


class ReplayFailed(Exception):
    pass


class ReplayRefused(ReplayFailed):
    """The request itself is wrong (a ``from_seq`` past the WAL's end)."""


@dataclass
class ReplayReport:
    space: str
    from_seq: int
    to_seq: int
    messages: int = 0
    memories: int = 0
    rejected: int = 0
    erased: int = 0  # WAL messages of replaced/forgotten versions erased now
    fold_s: float = 0.0
    index_s: float = 0.0
    snapshot_s: float = 0.0
    snapshot_bytes: int = 0
    total_s: float = 0.0
    dry_run: bool = False
    reloaded: list[ReloadReply] = field(default_factory=list)
    reload_errors: list[str] = field(default_factory=list)

    @property
    def fold_rate(self) -> float:
        return self.messages / self.fold_s if self.fold_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "messages": self.messages,
            "memories": self.memories,
            "rejected": self.rejected,
            "erased": self.erased,
            "fold_s": round(self.fold_s, 3),
            "fold_msgs_per_s": round(self.fold_rate),
            "index_s": round(self.index_s, 3),
            "snapshot_s": round(self.snapshot_s, 3),
            "snapshot_bytes": self.snapshot_bytes,
            "total_s": round(self.total_s, 3),
            "dry_run": self.dry_run,
            "reloaded": [r.model_dump(mode="json") for r in self.reloaded],
            "reload_errors": self.reload_errors,
        }


async def fold_stream(
    nc: Client,
    state: SpaceState,
    *,
    from_seq: int = 1,
    progress: Progress | None = None,
    to_erase: list[int] | None = None,
) -> tuple[int, int]:
    """Fold the space's stream from ``from_seq`` up to its last seq at the start
    into ``state`` (index inserts left pending). Returns ``(messages, last seq)``.
    The seqs of messages that hold a replaced or forgotten version are appended
    to ``to_erase``."""
    js = nc.jetstream()
    info = await js.stream_info(stream_name(state.space))
    target = int(info.state.last_seq)
    first = max(from_seq, int(info.state.first_seq))
    total = max(0, target - first + 1)  # an upper bound: erased messages leave gaps
    if total == 0 or int(info.state.messages) == 0:
        return 0, target
    done = asyncio.Event()
    folded = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal folded
        if done.is_set():
            return
        seq, stamp, after = position(msg.reply)
        if seq > target:
            done.set()
            return
        verb = command_verb(msg.subject)
        event = state.apply_message(verb, msg.data, seq, stored_at(stamp))
        if to_erase is not None and event is not None and event.erases is not None:
            to_erase.append(event.erases)
        folded += 1
        if progress is not None and folded % 1000 == 0:
            progress("fold", seq - first + 1, total)
        if seq >= target or after == 0:
            done.set()

    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first
    )
    sub = await js.subscribe(
        wal_subjects(state.space),
        stream=stream_name(state.space),
        ordered_consumer=True,
        cb=on_msg,
        config=config,
        pending_msgs_limit=-1,
        pending_bytes_limit=-1,
    )
    try:
        await done.wait()
    finally:
        await close_consumer(js, stream_name(state.space), sub)
    if progress is not None:
        progress("fold", total, total)
    return folded, target


async def build_index(state: SpaceState, batch_size: int, progress: Progress | None = None) -> None:
    total = state.pending
    done = 0
    while True:
        batch = state.indexing.take(batch_size)
        if batch is None:
            break
        await asyncio.to_thread(state.indexing.run, batch)
        done += len(batch.keys)
        if progress is not None:
            progress("index", done, total)


async def request_reload(
    nc: Client, space: str, wait: float
) -> tuple[list[ReloadReply], list[str]]:
    """Ask every worker hosting ``space`` to load it again; gather their answers
    until ``wait`` seconds pass (or 1 s after the last answer)."""
    replies: list[ReloadReply] = []
    errors: list[str] = []
    request = ReloadRequest(space=space).model_dump_json().encode()
    # every worker answers, hosting or not
    for data in await gather(nc, RELOAD_SUBJECT, request, wait=wait, quiet=1.0):
        try:
            doc = json.loads(data)
            if "error" in doc:
                errors.append(str(doc["error"].get("detail", doc["error"])))
            else:
                reply = ReloadReply.model_validate(doc)
                if reply.hosted:
                    replies.append(reply)
        except (ValueError, ValidationError) as exc:
            errors.append(f"unreadable reply: {exc}")
    return replies, errors


async def replay(
    nc: Client,
    space: str,
    settings: WorkerSettings,
    *,
    from_seq: int = 1,
    dry_run: bool = False,
    reload_wait: float = 30.0,
    progress: Progress | None = None,
) -> ReplayReport:
    """Rebuild ``space`` from its WAL (ignoring any snapshot)."""
    started = time.perf_counter()
    js = nc.jetstream()
    registry = SpaceRegistry(js, replicas=settings.stream_replicas)
    await registry.open()
    rec = await registry.get(space)
    if rec is None or rec.status != "active":
        raise ReplayFailed(f"memory space {space!r} does not exist")
    last = int((await js.stream_info(stream_name(space))).state.last_seq)
    if from_seq > max(last, 1):
        raise ReplayRefused(
            f"--from-seq {from_seq} is past the end of the WAL of {space!r} (its last seq "
            f"is {last}): nothing to replay"
        )
    state = SpaceState(rec, get_embedder(rec.embedder, rec.dim), index_dtype=settings.index_dtype)
    t0 = time.perf_counter()
    to_erase: list[int] = []
    messages, target = await fold_stream(
        nc, state, from_seq=from_seq, progress=progress, to_erase=to_erase
    )
    report = ReplayReport(space=space, from_seq=from_seq, to_seq=target, messages=messages)
    report.fold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    await build_index(state, settings.index_batch, progress)
    report.index_s = time.perf_counter() - t0
    report.memories, report.rejected = len(state), state.rejected
    report.dry_run = dry_run
    if not dry_run:
        t0 = time.perf_counter()
        state.flush()
        records = capture(state)
        await asyncio.to_thread(state.index.scrub)
        index_bytes = await asyncio.to_thread(state.index.to_bytes)
        # a forget the hosting worker has not folded yet would otherwise never be
        # erased: the reloaded worker starts after it (erasing twice is harmless)
        pending = []
        for seq in to_erase:
            try:
                if await delete_msg(js, stream_name(space), seq):
                    report.erased += 1
            except Exception as exc:  # kept in the snapshot: the worker retries
                log.warning("replay %s: erasing seq %d failed: %r", space, seq, exc)
                pending.append(seq)
        header = snapshot_header(state, rec, settings.index_dtype, "replay", pending)
        snapshots = SnapshotStore(js, replicas=settings.stream_replicas)
        await snapshots.open()
        report.snapshot_bytes = await write_snapshot(snapshots, header, records, index_bytes)
        report.snapshot_s = time.perf_counter() - t0
        report.reloaded, report.reload_errors = await request_reload(nc, space, reload_wait)
    report.total_s = time.perf_counter() - started
    return report


__all__ = ["ReplayFailed", "ReplayReport", "replay"]
