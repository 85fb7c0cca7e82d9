"""Recall latency while a snapshot is written: a focused reproduction, not a bench phase.

Hosts one space of ``--n`` memories in a real worker (this script, run with
``--worker``: the usual :class:`~engram_worker.worker.Worker` plus a
``bench.snapshot`` subject that writes the space's snapshot now and answers with
how long each step took and how late the worker's event loop ran meanwhile)
beside nats-server and a gateway, then runs 8 concurrent NATS recall clients
(similarity, k=10, reinforce on, as the throughput phase does) in windows of
``--seconds``: alternately without a snapshot and with one triggered half a
second into the window, once with each procedure of ``--how`` (``locked``: the
snapshot as it was before issue 14's fix, ``current``: as it is). Prints per
window p50 / p99 / max latency and, for the snapshot windows, the snapshot's
steps, when the index write lock was released and the event loop's lag.

    .venv/bin/python ops/bench/snapshot_stall.py --n 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import numpy as np
from ingest import remember_messages
from measure import NATS_SPACE, Config, make_dataset
from stack import Stack, _spawn, _stop, _wait_ready, free_port, new_stack
from wire import (
    create_space,
    probe_body,
    publish_windowed,
    recall_body,
    wait_hosted,
    wait_searchable_nats,
)

from engram_cli.devstack import start_nats_server

SNAPSHOT_SUBJECT = "bench.snapshot"
CLIENTS = 8
LAG_TICK = 0.005  # the worker's loop-lag probe sleeps this long
T = TypeVar("T")

# ---------------------------------------------------------------------------
# the worker side (``--worker``)


class Steps:
    """Start and end of each timed call, relative to ``t0``."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.spans: list[tuple[str, float, float]] = []

    def timed(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spans.append((name, start - self.t0, time.perf_counter() - self.t0))

        return wrapper

    def timed_async(
        self, name: str, fn: Callable[..., Awaitable[T]]
    ) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.spans.append((name, start - self.t0, time.perf_counter() - self.t0))

        return wrapper


async def lag_probe(lags: list[tuple[float, float]]) -> None:
    """How late a ``LAG_TICK`` sleep wakes up: the event loop's lag, over time."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(LAG_TICK)
        lags.append((t, time.perf_counter() - t - LAG_TICK))
        if len(lags) > 200_000:
            del lags[:100_000]


async def locked_snapshot(host: Any) -> Any:
    """The snapshot as it was before it stopped stalling recalls (for the A/B): the
    index lock held for writing across the capture (on the event loop), the scrub
    and the serialisation; encoding and writing as now."""
    from engram_worker.core.persistence import capture
    from engram_worker.snapshotter import snapshot_header, write_snapshot

    snap = host.snapshotter
    async with snap._lock:
        async with host.indexer.lock:
            batch = host.state.indexing.take()
            if batch is not None:
                await host.indexer.run(batch)
            host.state.flush()
            records = capture(host.state)
            header = snapshot_header(
                host.state, host.record, host.settings.index_dtype, "bench (locked)", []
            )
            snap.captured_seq, snap.since_snapshot = header.applied_seq, 0
            index = host.state.index
            await asyncio.to_thread(index.scrub)
            index_bytes = await asyncio.to_thread(index.to_bytes)
        await write_snapshot(snap._store, header, records, index_bytes)
        snap.snapshot_seq = header.applied_seq
    return header


async def serve_worker() -> None:
    from engram_contract.settings import WorkerSettings
    from engram_worker import snapshotter as snap_mod
    from engram_worker.core import persistence
    from engram_worker.core import snapshot as snapshot_format
    from engram_worker.core.index import VectorIndex
    from engram_worker.snapshots import SnapshotStore
    from engram_worker.worker import Worker

    settings = WorkerSettings()
    worker = Worker(settings)
    await worker.start()
    lags: list[tuple[float, float]] = []
    probe = asyncio.create_task(lag_probe(lags))

    async def on_snapshot(msg: Any) -> None:
        space, how = json.loads(msg.data)
        host = worker.hosting.hosts[space]
        steps = Steps()
        patched = {
            (snap_mod, "capture"): steps.timed("capture", persistence.capture),
            (persistence, "capture"): steps.timed("capture", persistence.capture),
            (snap_mod, "encode"): steps.timed("encode", snapshot_format.encode),
            (VectorIndex, "scrub"): steps.timed("scrub", VectorIndex.scrub),
            (VectorIndex, "to_bytes"): steps.timed("to_bytes", VectorIndex.to_bytes),
            (SnapshotStore, "save"): steps.timed_async("write", SnapshotStore.save),
        }
        saved = {key: getattr(*key) for key in patched}
        lock = host.indexer.lock
        lock_spans: list[float] = []
        real_release, real_downgrade = lock.release_write, lock.downgrade

        def release_write() -> None:  # the index lock's writer leaves
            lock_spans.append(time.perf_counter() - steps.t0)
            real_release()

        def downgrade() -> None:  # or becomes a reader
            lock_spans.append(time.perf_counter() - steps.t0)
            real_downgrade()

        for (owner, name), fn in patched.items():
            setattr(owner, name, fn)
        lock.release_write = release_write  # type: ignore[method-assign]
        lock.downgrade = downgrade  # type: ignore[method-assign]
        start = time.perf_counter()
        try:
            if how == "locked":
                header = await locked_snapshot(host)
            else:
                header = await host.snapshotter.snapshot("bench")
        finally:
            for (owner, name), fn in saved.items():
                setattr(owner, name, fn)
            del lock.release_write, lock.downgrade
        end = time.perf_counter()
        during = [lag for t, lag in lags if start <= t <= end]
        reply = {
            "memories": header.memories,
            "total_s": end - start,
            "steps": steps.spans,
            "index_write_released_at": lock_spans[:1],  # or downgraded
            "loop_lag_max_ms": 1000 * max(during, default=0.0),
            "loop_lag_p99_ms": 1000 * float(np.percentile(during, 99)) if during else 0.0,
        }
        await msg.respond(json.dumps(reply).encode())

    await worker.nc.subscribe(SNAPSHOT_SUBJECT, cb=on_snapshot)
    print("snapshot-stall worker ready", flush=True)
    stop = asyncio.Event()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        probe.cancel()
        await worker.stop()


# ---------------------------------------------------------------------------
# the client side


async def clients_window(nc: Any, bodies: list[bytes], seconds: float) -> list[tuple[float, float]]:
    """``CLIENTS`` tasks sending recalls back to back: (start, latency) of each."""
    subject = f"spaces.{NATS_SPACE}.q.recall"
    deadline = time.perf_counter() + seconds
    stride = max(1, len(bodies) // CLIENTS)

    async def client(start: int) -> list[tuple[float, float]]:
        out, i = [], start
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            msg = await nc.request(subject, bodies[i % len(bodies)], timeout=30.0)
            if msg.data.startswith(b'{"error"'):
                raise RuntimeError(msg.data[:300])
            out.append((t0, time.perf_counter() - t0))
            i += 1
        return out

    per = await asyncio.gather(*(client(c * stride) for c in range(CLIENTS)))
    return sorted(x for times in per for x in times)


def summary(times: list[tuple[float, float]]) -> dict[str, float]:
    lat = np.array([t for _, t in times]) * 1000
    return {
        "requests": len(lat),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
    }


async def drive(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    cfg = Config(
        n=args.n,
        dim=args.dim,
        quick=False,
        samples=0,
        mode_samples=0,
        warmup=0,
        out=Path("/dev/null"),
    )
    data = make_dataset(cfg)
    nc = await nats.connect(stack.nats_url)
    try:
        async with httpx.AsyncClient(base_url=stack.http_url, timeout=60) as http:
            await create_space(http, NATS_SPACE, cfg.dim)
        await wait_hosted(nc, NATS_SPACE)
        t0 = time.perf_counter()
        last = 0
        for lo in range(0, cfg.n, 20_000):
            msgs = remember_messages(data, lo, min(cfg.n, lo + 20_000), "stall")
            last = await publish_windowed(nc.jetstream(), msgs, cfg.window)
        await wait_searchable_nats(nc, NATS_SPACE, last, probe_body(data.vectors[-1]))
        print(f"ingested {cfg.n} in {time.perf_counter() - t0:.1f} s", flush=True)

        async def snapshot(how: str = "current") -> dict[str, Any]:
            body = json.dumps([NATS_SPACE, how]).encode()
            msg = await nc.request(SNAPSHOT_SUBJECT, body, timeout=300)
            doc: dict[str, Any] = json.loads(msg.data)
            return doc

        first = await snapshot()  # the ingest's own snapshot, untimed
        print(f"first snapshot {first['total_s']:.2f} s", flush=True)
        bodies = [recall_body(q, cfg.k, "similarity") for q in data.queries]
        await clients_window(nc, bodies, 1.0)  # warm-up
        out: dict[str, Any] = {"n": cfg.n, "clients": CLIENTS, "rounds": []}
        for r in range(args.rounds):
            quiet = summary(await clients_window(nc, bodies, args.seconds))

            row: dict[str, Any] = {"quiet": quiet}
            for how in args.how:

                async def later(how: str = how) -> dict[str, Any]:
                    await asyncio.sleep(0.5)
                    return await snapshot(how)

                window, snap = await asyncio.gather(
                    clients_window(nc, bodies, args.seconds), later()
                )
                steps: dict[str, float] = {}
                for name, a, b in snap["steps"]:
                    steps[name] = round(steps.get(name, 0.0) + b - a, 3)
                row[how] = {
                    "recalls": summary(window),
                    "snapshot_total_s": round(snap["total_s"], 3),
                    "steps_s": steps,
                    "index_write_released_at_s": [
                        round(x, 3) for x in snap["index_write_released_at"]
                    ],
                    "loop_lag_max_ms": round(snap["loop_lag_max_ms"], 1),
                    "loop_lag_p99_ms": round(snap["loop_lag_p99_ms"], 1),
                }
                await clients_window(nc, bodies, 0.5)  # settle
            print(json.dumps({"round": r + 1} | row), flush=True)
            out["rounds"].append(row)
        return out
    finally:
        await nc.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    stack, nats_port = new_stack(
        "engram-stall-",
        ENGRAM_SNAPSHOT_EVERY=str(10**9),  # only the snapshots asked for
        ENGRAM_SNAPSHOT_INTERVAL=str(10**6),
        ENGRAM_METRICS_PORT=str(free_port()),
    )
    workdir, env = stack.workdir, stack.env
    try:
        server = start_nats_server(workdir / "nats", nats_port, log_file=stack.log("nats-server"))
        stack.procs.append(("nats-server", server))
        with open(stack.log("worker"), "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack.procs.append(("worker", worker))
        _spawn(stack, "gateway", env)
        _wait_ready(stack, stack.http_url)
        return asyncio.run(drive(stack, args))
    except Exception:
        for name, _ in stack.procs:
            with contextlib.suppress(OSError):
                tail = stack.log(name).read_text(errors="replace").splitlines()[-20:]
                print(f"--- {name} ---\n" + "\n".join(tail), file=sys.stderr)
        raise
    finally:
        for name, proc in reversed(stack.procs):
            _stop(name, proc)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument(
        "--how",
        nargs="+",
        choices=["locked", "current"],
        default=["locked", "current"],
        help="snapshot procedures to compare, in this order each round: 'locked' is the "
        "one before issue 14's fix (index write lock across capture and serialisation)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import logging

        logging.basicConfig(level=logging.INFO)
        asyncio.run(serve_worker())
        return 0
    print(json.dumps(run(args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
