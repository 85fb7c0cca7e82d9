"""A focused A/B of the worker's start and of its NATS recall path, outside the
full bench: one N-memory space ingested once, then, alternating between worker
code trees (``--tree``: a source tree whose libs/, services/worker/ and cli/ go
first on the worker's PYTHONPATH; ``.`` is this one), rounds of

- restart: the worker process stopped and spawned again with the snapshot in
  place, timed to the first answered recall over NATS (as ops/bench/restart.py),
  next to the raw limit (the snapshot's chunks read + usearch ``Index.restore``);
- recall: sequential similarity recalls over NATS (reinforcement on, as the
  bench's), their p50, beside ``SpaceState.recall`` p50 on the same state
  restored in this process, timed in the same round.

    .venv/bin/python ops/bench/startup.py --n 100000 --tree /tmp/base --tree .

Not a test: numbers only, medians per tree at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import statistics
import subprocess
import time
from pathlib import Path

import httpx
import nats
import nats.errors
import profile_query
from fold_recovery import WORKER_STOP_TIMEOUT
from ingest import remember_messages
from measure import HOSTED_TIMEOUT, NATS_SPACE, Config, make_dataset, step
from nats.aio.client import Client
from recall_paths import recall_query
from restart import first_recall, raw_restart_limit
from stack import Stack, process_cpu_s, running_stack
from wire import (
    create_space,
    probe_body,
    publish_windowed,
    recall_body,
    wait_hosted,
    wait_searchable_nats,
)

from engram_contract.embedders import get_embedder
from engram_nats.registry import SpaceRegistry
from engram_worker.core.index import VectorIndex
from engram_worker.core.persistence import restore
from engram_worker.core.snapshot import decode
from engram_worker.core.state import SpaceState
from engram_worker.snapshots import SnapshotStore


def use_tree(stack: Stack, tree: str) -> None:
    """The worker spawned next runs the code of ``tree``."""
    env = dict(stack.env)
    env.pop("PYTHONPATH", None)
    if tree != ".":
        root = Path(tree).resolve()
        env["PYTHONPATH"] = ":".join(str(root / p) for p in ("libs", "services/worker", "cli"))
    stack.env = env


async def restored_state(nc: Client) -> SpaceState:
    js = nc.jetstream()
    store = SnapshotStore(js)
    await store.open()
    registry = SpaceRegistry(js)
    await registry.open()
    rec = await registry.get(NATS_SPACE)
    assert rec is not None
    loaded = await store.load(NATS_SPACE)
    assert loaded is not None
    snap = decode(loaded[1])
    index = VectorIndex.from_bytes(snap.index, rec.dim, rec.metric)
    state = SpaceState(rec, get_embedder(rec.embedder, rec.dim))
    h = snap.header
    restore(
        state,
        snap.records,
        index,
        applied_seq=h.applied_seq,
        next_key=h.next_key,
        rejected=h.rejected,
        format=h.format,
    )
    state.flush()
    return state


async def main(args: argparse.Namespace) -> None:
    cfg = Config(
        n=args.n,
        dim=384,
        quick=False,
        samples=args.samples,
        mode_samples=0,
        warmup=50,
        out=Path("/dev/null"),
    )
    data = make_dataset(cfg)
    trees: list[str] = args.tree or ["."]
    out: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
    with running_stack() as stack:
        base_env = dict(stack.env)
        nc = await nats.connect(stack.nats_url)
        async with httpx.AsyncClient(base_url=stack.http_url, timeout=60) as http:
            await create_space(http, NATS_SPACE, cfg.dim)
        async with asyncio.timeout(HOSTED_TIMEOUT):
            await wait_hosted(nc, NATS_SPACE)
        step(f"ingest {cfg.n}")
        if args.publish_stopped:  # the worker folds the WAL at start, from seq 1
            await asyncio.to_thread(stack.stop_gracefully, "worker", WORKER_STOP_TIMEOUT)
        last = 0
        for lo in range(0, cfg.n, 20_000):
            hi = min(cfg.n, lo + 20_000)
            last = await publish_windowed(
                nc.jetstream(), remember_messages(data, lo, hi, "sb"), cfg.window
            )
        if args.publish_stopped:
            stack.restart("worker")
            await wait_hosted(nc, NATS_SPACE)
        async with asyncio.timeout(3600):
            while True:
                try:
                    await wait_searchable_nats(nc, NATS_SPACE, last, probe_body(data.vectors[-1]))
                    break
                except nats.errors.NoRespondersError:
                    print("no responders while the worker folds; asking again", flush=True)
                    await asyncio.sleep(0.5)
        cue = probe_body(data.vectors[-1])
        bodies = [recall_body(q, cfg.k, "similarity") for q in data.queries]
        subject = f"spaces.{NATS_SPACE}.q.recall"
        query = recall_query(cfg, data, "similarity")
        state: SpaceState | None = None
        for r in range(args.rounds):
            for tree in trees:
                res = out[tree]
                await asyncio.to_thread(stack.stop_gracefully, "worker", WORKER_STOP_TIMEOUT)
                seq = last
                if state is None:
                    state = await restored_state(nc)
                    res0 = await raw_restart_limit(nc)
                    print("raw limit", res0, flush=True)
                    for t in trees:
                        out[t]["raw_limit_s"] = []
                    gc.collect()
                use_tree(stack, tree)
                t0 = stack.restart("worker")
                async with asyncio.timeout(600):
                    await first_recall(nc, seq, cue)
                spawn_s = time.perf_counter() - t0
                cpu_s = process_cpu_s(stack.pid("worker"))
                res.setdefault("cpu_to_first_recall_s", []).append(cpu_s)
                await asyncio.sleep(0.3)  # the worker's log lines of its start
                text = await asyncio.to_thread(stack.log("worker").read_text, errors="replace")
                lines = text.splitlines()
                restored = [x for x in lines if "from its snapshot in" in x][-1:]
                started = [x for x in lines[-12:] if "started in" in x][-1:]
                for line in restored + started:
                    print("   ", line.split(": ", 1)[-1][:200], flush=True)
                res.setdefault("spawn_to_first_recall_s", []).append(spawn_s)
                # recall: NATS p50, then in-process SpaceState.recall p50, interleaved blocks
                spy = None
                if args.py_spy and r == args.rounds - 1:
                    spy = await asyncio.create_subprocess_exec(
                        args.py_spy,
                        "record",
                        "-p",
                        str(stack.pid("worker")),
                        "-r",
                        "500",
                        "-f",
                        "raw",
                        "-o",
                        f"{args.spy_out}-{Path(tree).name or 'cur'}.txt",
                        "--nonblocking",
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    await asyncio.sleep(1.0)
                cpu0 = stack.cpu()
                nats_t: list[float] = []
                core_t: list[float] = []
                now = time.time()
                for i in range(args.warmup + args.samples):
                    body = bodies[i % len(bodies)]
                    t1 = time.perf_counter()
                    msg = await nc.request(subject, body, timeout=10)
                    el = time.perf_counter() - t1
                    assert not msg.data.startswith(b'{"error"'), msg.data[:200]
                    t2 = time.perf_counter()
                    state.recall(data.queries[(i + 97) % len(data.queries)], cfg.k, query, now)
                    el2 = time.perf_counter() - t2
                    if i >= args.warmup:
                        nats_t.append(el)
                        core_t.append(el2)
                used = {k: v - cpu0[k] for k, v in stack.cpu().items() if k in cpu0}
                n_req = args.warmup + args.samples
                res.setdefault("worker_cpu_ms_per_recall", []).append(used["worker"] / n_req * 1e3)
                res.setdefault("nats_server_cpu_ms_per_recall", []).append(
                    used["nats-server"] / n_req * 1e3
                )
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    await spy.wait()
                res.setdefault("nats_p50_ms", []).append(statistics.median(nats_t) * 1e3)
                res.setdefault("core_p50_ms", []).append(statistics.median(core_t) * 1e3)
                res.setdefault("gap_ms", []).append(
                    (statistics.median(nats_t) - statistics.median(core_t)) * 1e3
                )
                print(
                    f"round {r} {tree}: spawn→first recall {spawn_s:.3f} s (CPU {cpu_s:.2f} s), "
                    f"nats p50 {res['nats_p50_ms'][-1]:.3f} ms, core p50 "
                    f"{res['core_p50_ms'][-1]:.3f} ms, worker CPU per recall "
                    f"{res['worker_cpu_ms_per_recall'][-1]:.3f} ms",
                    flush=True,
                )
        stack.env = base_env
        if args.profile_query:
            await asyncio.to_thread(stack.stop_gracefully, "worker", WORKER_STOP_TIMEOUT)
            for _ in range(args.profile_query):
                medians = await profile_query.run(stack.nats_url, NATS_SPACE, 1000, 100)
                print(
                    "in-process, µs: "
                    + ", ".join(f"{k} {v * 1e6:.1f}" for k, v in medians.items()),
                    flush=True,
                )
        await nc.close()
        log = await asyncio.to_thread(stack.log("worker").read_text, errors="replace")
        await asyncio.to_thread(Path(args.log_out).write_text, log)
    for tree, res in out.items():
        print(tree, json.dumps({k: round(statistics.median(v), 4) for k, v in res.items() if v}))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--tree", action="append")
    p.add_argument(
        "--publish-stopped", action="store_true", help="publish while the worker is stopped"
    )
    p.add_argument("--profile-query", type=int, default=0, help="rounds of profile_query.py")
    p.add_argument("--py-spy", help="py-spy binary: record the worker in the last round")
    p.add_argument("--spy-out", default="/tmp/spy")
    p.add_argument("--log-out", default="/tmp/startbench-worker.log")
    asyncio.run(main(p.parse_args()))
