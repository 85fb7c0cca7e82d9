"""The WAL fold and recovery, in this process after the worker has stopped: the fold
against a raw replay, a full replay, a snapshot write and restores, and where a
restore's time goes."""

from __future__ import annotations

import asyncio
import gc
import io
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from measure import NATS_SPACE, Config, Dataset, Rate, Results, median_of, size_label, step
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from recall_paths import bench_in_worker_recall
from stack import Stack
from usearch.index import Index
from wire import Callback, counting_callback, timed_replay

from engram_contract.embedders import get_embedder
from engram_contract.messages import SpaceRecord
from engram_contract.settings import WorkerSettings
from engram_contract.subjects import command_verb, stream_name, wal_subjects
from engram_nats.registry import SpaceRegistry
from engram_nats.snapshots import BUCKET as SNAPSHOT_BUCKET
from engram_worker.core.index import VectorIndex
from engram_worker.core.persistence import restore
from engram_worker.core.snapshot import decode
from engram_worker.core.state import SpaceState
from engram_worker.host import SpaceHost
from engram_worker.positions import position, stored_at
from engram_worker.snapshot_restore import RestoreSink
from engram_worker.snapshots import SnapshotStore

FOLD_ROUNDS = 3  # raw and fold replays, alternated; the median counts
RESTORE_ROUNDS = 3  # snapshot restores; the median counts
WORKER_STOP_TIMEOUT = 300.0  # a graceful stop writes every changed space's snapshot


# ---------------------------------------------------------------------------
# WAL fold and recovery (in this process, after the worker has stopped)


class HostSettings(WorkerSettings):
    """Worker settings for the hosts this process runs: the defaults and what the
    bench passes, nothing from the environment (the stack clears ``ENGRAM_*`` too)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def host_settings(stack: Stack) -> WorkerSettings:
    """No periodic snapshot (the bench writes the one it times) and no events (every
    message replayed is history; a restarted worker folds old history quietly too)."""
    return HostSettings(
        nats_url=stack.nats_url,
        worker_id="bench",
        event_window=0.0,
        snapshot_every=1 << 62,
        snapshot_interval=1e9,
    )


def fold_callback(state: SpaceState, count: int) -> tuple[Callback, asyncio.Event]:
    """What the worker's WAL callback does to fold a message, minus the index: its
    position (``position(msg.reply)``), the verb from the subject, ``apply_message``.
    The vectors it buffers for the index are dropped now and then, not inserted."""
    done = asyncio.Event()
    folded = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal folded
        seq, stamp, _ = position(msg.reply)
        verb = command_verb(msg.subject)
        state.apply_message(verb, msg.data, seq, stored_at(stamp))
        folded += 1
        if folded % 4096 == 0:
            state.indexing.pending.clear()  # index inserts are not part of the fold
        if folded >= count:
            done.set()

    return on_msg, done


def _rounds(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


async def bench_wal_fold(
    cfg: Config,
    js: JetStreamContext,
    rec: SpaceRecord,
    count: int,
    last: int,
    memories: int,
    res: Results,
) -> None:
    """The space's WAL read by an ordered consumer whose callback only counts, and by
    the same consumer folding every message; alternated, the median of each counts."""
    subject, stream = wal_subjects(rec.id), stream_name(rec.id)
    raw: list[tuple[float, float]] = []  # (seconds, CPU seconds of this process)
    fold: list[tuple[float, float]] = []
    for _ in range(FOLD_ROUNDS):
        on_msg, done = counting_callback(count)
        c0 = time.process_time()
        seconds = await timed_replay(js, subject, stream, on_msg, done, cfg.replay_timeout)
        raw.append((seconds, time.process_time() - c0))
        state = SpaceState(rec, get_embedder(rec.embedder, rec.dim))
        on_msg, done = fold_callback(state, count)
        c0 = time.process_time()
        seconds = await timed_replay(js, subject, stream, on_msg, done, cfg.replay_timeout)
        fold.append((seconds, time.process_time() - c0))
        if state.applied_seq != last or len(state) != memories or state.rejected:
            raise RuntimeError(
                f"fold: applied_seq {state.applied_seq}, {len(state)} memories, "
                f"{state.rejected} rejected; expected seq {last}, {memories} memories"
            )
        del state, on_msg
        gc.collect()
    for name, rounds in (
        ("raw wal replay (count only)", raw),
        ("wal fold (apply_message, no index)", fold),
    ):
        seconds, cpu = sorted(rounds)[len(rounds) // 2]  # the median round
        note = f"median of {_rounds([s for s, _ in rounds])} s"
        res.rates.append(Rate.of(name, count, seconds, note, {"bench": cpu}))


@dataclass
class Recovered:
    """One host from ``start()`` until a recall at the stream's last seq answered."""

    seconds: float
    start_s: float  # in host.start(): snapshot read, checked, restored; subscribed
    cpu_s: float  # this process, all threads
    recovery: str  # what the host says it did


async def serve_again(
    host: SpaceHost, last: int, cue: np.ndarray, k: int, use_snapshot: bool, timeout: float
) -> Recovered:
    """Start ``host`` and time it until it answers a recall with ``min_seq`` = ``last``
    (what the worker does for such a query: wait until applied, then recall)."""
    c0, t0 = time.process_time(), time.perf_counter()
    await host.start(use_snapshot=use_snapshot)
    start_s = time.perf_counter() - t0
    await host.wait_applied(last, timeout)
    results = await host.with_index(lambda st: st.recall(cue, k))
    seconds = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    if not results or host.state.applied_seq < last:
        raise RuntimeError(f"{host.space}: no answer at seq {last} ({host.snapshotter.recovery})")
    return Recovered(
        round(seconds, 4), round(start_s, 4), round(cpu_s, 3), host.snapshotter.recovery
    )


async def bench_recovery(
    cfg: Config,
    stack: Stack,
    nc: Client,
    store: SnapshotStore,
    rec: SpaceRecord,
    last: int,
    data: Dataset,
    raw: Index,
    res: Results,
) -> None:
    """Full replay, then a snapshot written by the replayed host, then restores of it
    (and the in-worker recall on the last one restored)."""
    js = nc.jetstream()
    settings = host_settings(stack)
    cue = data.vectors[-1]
    out = res.recovery

    step(f"recovery: full replay of {size_label(cfg.n)} memories (fold + index)")
    host = SpaceHost(rec, nc, js, settings, store)
    replay = await serve_again(host, last, cue, cfg.k, False, cfg.replay_timeout)
    out["full_replay"] = asdict(replay)

    step("recovery: writing a snapshot")
    t0 = time.perf_counter()
    header = await host.snapshotter.snapshot(origin="bench")
    out["snapshot_write_s"] = round(time.perf_counter() - t0, 4)
    info = await store.info(rec.id)
    out["snapshot_bytes"] = None if info is None else info.size
    out["snapshot_seq"] = header.applied_seq
    out["snapshot_memories"] = header.memories
    await host.stop()
    del host
    gc.collect()

    step(f"recovery: snapshot restore ×{RESTORE_ROUNDS}")
    restores: list[Recovered] = []
    for _ in range(RESTORE_ROUNDS):
        host = SpaceHost(rec, nc, js, settings, store)
        restored = await serve_again(host, last, cue, cfg.k, True, cfg.replay_timeout)
        if not restored.recovery.startswith("restored from snapshot"):
            raise RuntimeError(f"{rec.id}: the snapshot was not used: {restored.recovery}")
        restores.append(restored)
        await host.stop()
        kept = host.state  # the last one serves the in-worker recall below
        del host
        gc.collect()

    step(f"in-worker recall by mode on the restored {size_label(len(kept))}-memory state")
    bench_in_worker_recall(cfg, kept, raw, data, res)
    del kept
    gc.collect()

    out["restore_breakdown"] = await restore_breakdown(js, store, rec)
    median = median_of([r.seconds for r in restores])
    typical = min(restores, key=lambda r: abs(r.seconds - median))
    out["snapshot_restore"] = asdict(typical) | {
        "seconds": round(median, 4),
        "rounds_s": [r.seconds for r in restores],
    }


async def restore_breakdown(
    js: JetStreamContext, store: SnapshotStore, rec: SpaceRecord
) -> dict[str, float]:
    """Where a restore's time goes: each step alone, one after the other (the
    whole object read and its digest checked, decoded, usearch ``Index.restore``,
    ``SpaceState`` restored); then a restore as ``SpaceHost`` does it, while the
    chunks arrive (``streamed_*``: its total and when each step was done); and
    the raw reference for the read: the same chunks read by an ordered consumer
    with ``next_msg`` into a buffer. Outside the timed rounds."""
    t0 = time.perf_counter()
    loaded = await store.load(rec.id)
    if loaded is None:
        raise RuntimeError(f"{rec.id}: no snapshot")
    info, data = loaded
    t1 = time.perf_counter()
    snap = await asyncio.to_thread(decode, data)
    t2 = time.perf_counter()
    index = await asyncio.to_thread(VectorIndex.from_bytes, snap.index, rec.dim, rec.metric)
    t3 = time.perf_counter()
    state = SpaceState(rec, get_embedder(rec.embedder, rec.dim))
    head = snap.header
    restore(
        state,
        snap.records,
        index,
        applied_seq=head.applied_seq,
        next_key=head.next_key,
        rejected=head.rejected,
        format=head.format,
    )
    t4 = time.perf_counter()
    steps = {
        "object_store_load_s": t1 - t0,
        "decode_s": t2 - t1,
        "index_from_bytes_s": t3 - t2,
        "state_restore_s": t4 - t3,
    }
    del snap, data, loaded, index, state
    gc.collect()
    # as the host restores: while the chunks arrive (steps overlap; each is when
    # it was done, from the restore's start)
    fresh = SpaceState(rec, get_embedder(rec.embedder, rec.dim))
    t0 = time.perf_counter()
    got = await store.read(rec.id, lambda i: RestoreSink(i, lambda _: None, fresh, t0))
    steps["streamed_restore_s"] = time.perf_counter() - t0
    if got is None:
        raise RuntimeError(f"{rec.id}: no snapshot")
    for name, at in got[1].times.items():
        steps[f"streamed_{name.replace(' ', '_')}_at_s"] = at
    del got
    gc.collect()
    steps["raw_chunk_read_s"] = await read_chunks(js, f"$O.{SNAPSHOT_BUCKET}.C.{info.nuid}")
    return {k: round(v, 4) for k, v in steps.items()}


async def read_chunks(js: JetStreamContext, subject: str) -> float:
    """Seconds to read every message on ``subject`` into one buffer with an ordered
    consumer and ``next_msg`` (which answers the server's flow control at once)."""
    buf = io.BytesIO()
    t0 = time.perf_counter()
    sub = await js.subscribe(subject, ordered_consumer=True)
    try:
        while True:
            msg = await sub.next_msg(timeout=10.0)
            buf.write(msg.data)
            if msg.metadata.num_pending == 0:
                break
    finally:
        seconds = time.perf_counter() - t0
        await sub.unsubscribe()
    return seconds


def _snapshot_seq(info: api.ObjectInfo | None) -> int | None:
    """The applied seq a snapshot object says it holds (its ``Engram-Applied-Seq``)."""
    value = (info.headers or {}).get("Engram-Applied-Seq") if info is not None else None
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else int(value)


async def bench_wal_and_recovery(
    cfg: Config, stack: Stack, nc: Client, data: Dataset, raw: Index, res: Results
) -> None:
    """Stop the worker (it writes its snapshots on the way out, and leaves the machine
    quiet), then measure the fold and the recovery of the NATS space here."""
    js = nc.jetstream()
    step("stopping the worker gracefully")
    store = SnapshotStore(js)
    await store.open()
    stop_s = await asyncio.to_thread(stack.stop_gracefully, "worker", WORKER_STOP_TIMEOUT)
    shutdown = await store.info(NATS_SPACE)
    res.recovery["worker_graceful_stop_s"] = round(stop_s, 3)
    res.recovery["worker_snapshot_seq"] = _snapshot_seq(shutdown)
    registry = SpaceRegistry(js)
    await registry.open()
    rec = await registry.get(NATS_SPACE)
    if rec is None:
        raise RuntimeError(f"space {NATS_SPACE} is not in the registry")
    state = (await js.stream_info(stream_name(NATS_SPACE), subjects_filter=">")).state
    by_verb = Counter[str]()
    for subject, n in (state.subjects or {}).items():
        by_verb[command_verb(subject)] += n
    res.recovery |= {
        "space": NATS_SPACE,
        "stream_last_seq": state.last_seq,
        "messages": state.messages,
        # besides the N remembers: the reinforce commands the recalls made the worker write
        "messages_by_verb": dict(sorted(by_verb.items())),
    }
    step("wal fold vs raw ordered-consumer replay")
    await bench_wal_fold(cfg, js, rec, state.messages, state.last_seq, cfg.n, res)
    await bench_recovery(cfg, stack, nc, store, rec, state.last_seq, data, raw, res)
