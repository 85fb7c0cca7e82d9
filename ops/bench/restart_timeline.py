"""A focused look at a worker's restart with a 100k space's snapshot in place:
where the time goes from a host's start (and from the process's spawn) to the
first answered recall, next to the raw limit (the snapshot's chunks read by an
ordered consumer + usearch ``Index.restore``), alternating between code trees.

The space is built once into a persistent data directory (``--data``: the
nats-server's store, reused by later runs): N remember commands published into
its WAL, folded and indexed by a host in this process, a snapshot written.
Then, per round and per tree (``--tree``: a source tree whose libs/,
services/worker/ and cli/ go first on PYTHONPATH; ``.`` is this one):

- host: a child process on that tree starts a ``SpaceHost`` (as placement
  does) and recalls at the stream's last seq; every step it passes through is
  timed (start and end from the host's start, so overlapping steps show);
- spawn: ``engram worker`` spawned on that tree, timed to its first answered
  NATS recall; its own log says where its start went.

    .venv/bin/python ops/bench/restart_timeline.py --n 100000 --tree /tmp/base --tree .

Not a test: numbers only, medians per tree at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import numpy as np

HERE = Path(__file__).resolve().parent
SPACE = "bench-nats"


def tree_env(tree: str) -> dict[str, str]:
    """The environment of a process on ``tree`` (``path@NAME=value,...``: with
    those variables set too)."""
    tree, _, extra = tree.partition("@")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= dict(kv.split("=", 1) for kv in extra.split(",") if kv)
    paths = [str(HERE)]
    if tree != ".":
        root = Path(tree).resolve()
        paths = [str(root / p) for p in ("libs", "services/worker", "cli")] + paths
    env["PYTHONPATH"] = ":".join(paths)
    return env


# ---------------------------------------------------------------------------
# building the space once


async def build(url: str, n: int, dim: int) -> dict[str, Any]:
    from fold_recovery import host_settings
    from ingest import remember_messages
    from measure import Config, make_dataset
    from stack import Stack
    from wire import publish_windowed

    from engram_nats.registry import SpaceRegistry
    from engram_worker.host import SpaceHost
    from engram_worker.snapshots import SnapshotStore

    cfg = Config(n=n, dim=dim, quick=False, samples=0, mode_samples=0, warmup=0, out=Path("/x"))
    data = make_dataset(cfg)
    nc = await nats.connect(url)
    js = nc.jetstream()
    registry = SpaceRegistry(js)
    await registry.open()
    rec, _ = await registry.create_or_get(SPACE, dim=dim)
    store = SnapshotStore(js)
    await store.open()
    last = 0
    t0 = time.perf_counter()
    for lo in range(0, n, 20_000):
        msgs = remember_messages(data, lo, min(n, lo + 20_000), "rt")
        last = await publish_windowed(js, msgs, cfg.window)
    print(f"published {n} in {time.perf_counter() - t0:.1f} s; folding and indexing", flush=True)
    stack = Stack(Path("/tmp"), url, "", [])
    host = SpaceHost(rec, nc, js, host_settings(stack), store)
    t0 = time.perf_counter()
    await host.start(use_snapshot=False)
    await host.wait_applied(last, 7200)
    await host.with_index(lambda st: st.flush())
    print(f"folded and indexed in {time.perf_counter() - t0:.1f} s; snapshot", flush=True)
    await host.snapshotter.snapshot(origin="bench")
    await host.stop()
    await nc.close()
    return {"last_seq": last, "n": n, "dim": dim, "cue": data.vectors[-1].tolist()}


# ---------------------------------------------------------------------------
# the raw limit (this process)


async def raw_limit(url: str) -> dict[str, float]:
    from fold_recovery import read_chunks
    from usearch.index import Index

    from engram_nats.snapshots import BUCKET
    from engram_worker.core.snapshot import decode
    from engram_worker.snapshots import SnapshotStore

    nc = await nats.connect(url)
    js = nc.jetstream()
    store = SnapshotStore(js)
    await store.open()
    info = await store.info(SPACE)
    assert info is not None
    read_s = await read_chunks(js, f"$O.{BUCKET}.C.{info.nuid}")
    loaded = await store.load(SPACE)
    assert loaded is not None
    index_bytes = bytes(decode(loaded[1]).index)
    del loaded
    gc.collect()
    t0 = time.perf_counter()
    index = Index.restore(index_bytes)
    restore_s = time.perf_counter() - t0
    del index, index_bytes
    gc.collect()
    await nc.close()
    return {"chunk_read_s": read_s, "index_restore_s": restore_s, "raw_limit_s": read_s + restore_s}


# ---------------------------------------------------------------------------
# the host's start, step by step (a child process on one tree)


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.steps: list[tuple[str, float, float]] = []

    def wrap(self, owner: Any, name: str, label: str | None = None) -> None:
        """Time every call of ``owner.name`` (sync or async) from now on, if it exists."""
        fn = getattr(owner, name, None)
        if fn is None:
            return
        label = label or name
        if isinstance(inspect.getattr_static(owner, name), staticmethod | classmethod):
            raw = inspect.getattr_static(owner, name).__func__
            kind = type(inspect.getattr_static(owner, name))
        else:
            raw, kind = fn, None
        if inspect.iscoroutinefunction(raw):

            @functools.wraps(raw)
            async def timed_async(*a: Any, **k: Any) -> Any:
                s = time.perf_counter()
                try:
                    return await raw(*a, **k)
                finally:
                    self.steps.append((label, s - self.t0, time.perf_counter() - self.t0))

            new: Any = timed_async
        else:

            @functools.wraps(raw)
            def timed(*a: Any, **k: Any) -> Any:
                s = time.perf_counter()
                try:
                    return raw(*a, **k)
                finally:
                    self.steps.append((label, s - self.t0, time.perf_counter() - self.t0))

            new = timed
        setattr(owner, name, kind(new) if kind is not None else new)


def instrument(tl: Timeline) -> None:
    """Wrap whatever of the load path this tree has (names differ between trees)."""
    from nats.js.client import JetStreamContext

    import engram_worker.core.persistence as persistence
    import engram_worker.host as host
    import engram_worker.snapshots as snapshots
    import engram_worker.snapshotter as snapshotter
    from engram_worker.core.index import VectorIndex
    from engram_worker.core.state import SpaceState
    from engram_worker.wal_consumer import WalConsumer

    tl.wrap(JetStreamContext, "stream_info", "stream_info")
    tl.wrap(snapshots.SnapshotStore, "info", "store.info")
    tl.wrap(snapshots.SnapshotStore, "load", "store.load")
    tl.wrap(snapshots.SnapshotStore, "_read", "store._read (chunks + digest)")
    tl.wrap(snapshotter, "decode", "decode")
    tl.wrap(snapshotter, "restore", "persistence.restore")
    tl.wrap(snapshotter, "open_snapshot", "open_snapshot")
    tl.wrap(VectorIndex, "from_bytes", "VectorIndex.from_bytes")
    tl.wrap(SpaceState, "load", "SpaceState.load")
    tl.wrap(snapshotter.Snapshotter, "recover", "Snapshotter.recover")
    tl.wrap(WalConsumer, "start", "WalConsumer.start")
    tl.wrap(host.SpaceHost, "caught_up", "host.caught_up")
    tl.wrap(persistence, "prepare", "persistence.prepare (records, graph)")
    tl.wrap(persistence, "finish", "persistence.finish")
    try:  # the streamed restore, where the tree has it
        import engram_worker.core.restoring as restoring
        import engram_worker.snapshot_restore as snapshot_restore
    except ImportError:
        return
    tl.wrap(restoring.Restoring, "feed", "Restoring.feed (copy + hash; read thread)")
    tl.wrap(restoring.Restoring, "take", "Restoring.take (decode; decode thread)")
    tl.wrap(restoring.Restoring, "finish", "Restoring.finish (view + check)")
    tl.wrap(snapshot_restore.RestoreSink, "feed", "RestoreSink.feed (on the loop)")
    tl.wrap(snapshot_restore.RestoreSink, "end", "RestoreSink.end (wait for threads)")


def child_settings(url: str) -> Any:
    """fold_recovery's host settings, made here: this runs on other trees too,
    whose worker lacks what fold_recovery (of this tree) imports."""
    from engram_contract.settings import WorkerSettings

    return WorkerSettings(
        nats_url=url,
        worker_id="bench",
        event_window=0.0,
        snapshot_every=1 << 62,
        snapshot_interval=1e9,
    )


async def host_round(url: str, last: int, cue: list[float]) -> dict[str, Any]:
    import engram_worker
    from engram_nats.registry import SpaceRegistry
    from engram_worker.host import SpaceHost
    from engram_worker.snapshots import SnapshotStore

    nc = await nats.connect(url)
    js = nc.jetstream()
    registry = SpaceRegistry(js)
    await registry.open()
    rec = await registry.get(SPACE)
    assert rec is not None
    store = SnapshotStore(js)
    await store.open()
    settings = child_settings(url)
    vec = np.asarray(cue, dtype=np.float32)
    tl = Timeline()
    instrument(tl)
    gc.collect()
    c0 = time.process_time()
    tl.t0 = t0 = time.perf_counter()
    host = SpaceHost(rec, nc, js, settings, store)
    await host.start()
    start_s = time.perf_counter() - t0
    await host.caught_up()
    results = await host.with_index(lambda st: st.recall(vec, 10))
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    assert results, "no answer"
    recovery = host.snapshotter.recovery
    assert recovery.startswith("restored"), recovery
    await host.stop()
    await nc.close()
    return {
        "tree": str(Path(engram_worker.__file__).parents[3]),
        "host_start_s": start_s,
        "host_to_first_recall_s": total,
        "cpu_s": cpu,
        "recovery": recovery,
        "steps": tl.steps,
    }


# ---------------------------------------------------------------------------
# the process's spawn


def _spawn_worker(env: dict[str, str], log: Path) -> tuple[int, subprocess.Popen[bytes], float]:
    """``engram worker`` started, logging into ``log``: the log's size before,
    the process and the ``perf_counter`` just before its spawn."""
    size = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "engram_cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return size, proc, t0


async def first_recall(nc: Any, last: int, body: bytes) -> None:
    import nats.errors

    while True:
        try:
            msg = await nc.request(f"spaces.{SPACE}.q.recall", body, timeout=30)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            await asyncio.sleep(0.002)
            continue
        doc = json.loads(msg.data)
        if "error" in doc:
            if doc["error"]["status"] not in (404, 503, 504):
                raise RuntimeError(doc["error"])
            await asyncio.sleep(0.002)
            continue
        if doc["applied_seq"] >= last and doc["results"]:
            return


async def spawn_round(
    url: str, tree: str, last: int, cue: list[float], log: Path
) -> dict[str, Any]:
    from stack import free_port, process_cpu_s

    from engram_contract.messages import encode_embedding

    body = json.dumps(
        {
            "embedding_b64": encode_embedding(np.asarray(cue, dtype=np.float32)),
            "k": 10,
            "consistency": "strong",
            "reinforce": False,
        }
    ).encode()
    env = tree_env(tree) | {
        "ENGRAM_NATS_URL": url,
        "ENGRAM_DATA_DIR": str(log.parent / "data"),
        "ENGRAM_METRICS_PORT": str(free_port()),
    }
    nc = await nats.connect(url)
    size, proc, t0 = await asyncio.to_thread(_spawn_worker, env, log)
    try:
        async with asyncio.timeout(600):
            await first_recall(nc, last, body)
        seconds = time.perf_counter() - t0
        cpu = process_cpu_s(proc.pid)
        await asyncio.sleep(0.5)  # its start's log lines
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 300)
        await nc.close()
    text = (await asyncio.to_thread(log.read_bytes))[size:].decode(errors="replace")
    lines = [x.split(": ", 1)[-1][:300] for x in text.splitlines()]
    keep = [x for x in lines if "started in" in x or "from its snapshot in" in x or "serving" in x]
    return {"spawn_to_first_recall_s": seconds, "cpu_s": cpu, "log": keep}


# ---------------------------------------------------------------------------


def child_host(url: str, last: int, cue: list[float]) -> None:
    out = asyncio.run(host_round(url, last, cue))
    print("RESULT " + json.dumps(out), flush=True)


def run_child(tree: str, url: str, meta: dict[str, Any]) -> dict[str, Any]:
    args = [sys.executable, str(HERE / "restart_timeline.py"), "--child-host", url]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(meta, f)
    proc = subprocess.run(
        [*args, "--meta", f.name], env=tree_env(tree), capture_output=True, text=True, timeout=900
    )
    os.unlink(f.name)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out: dict[str, Any] = json.loads(line[7:])
            return out
    raise RuntimeError(
        f"host child on {tree} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


def show_steps(steps: list[tuple[str, float, float]]) -> None:
    """One line per step (a step called many times: first start, last end, the
    calls' sum and count)."""
    merged: dict[str, list[float]] = {}
    for label, s, e in steps:
        m = merged.setdefault(label, [s, e, 0.0, 0])
        m[0], m[1], m[2], m[3] = min(m[0], s), max(m[1], e), m[2] + e - s, m[3] + 1
    for label, (s, e, busy, calls) in sorted(merged.items(), key=lambda x: x[1][0]):
        more = f" ({int(calls)} calls, {busy:.3f} s in them)" if calls > 1 else ""
        print(f"      {s:7.3f} → {e:7.3f}  {e - s:6.3f}  {label}{more}", flush=True)


async def main(args: argparse.Namespace) -> None:
    from stack import free_port

    from engram_cli.devstack import start_nats_server

    data = Path(args.data)
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = start_nats_server(data / "nats", port, log_file=data / "nats.log")
    try:
        meta_path = data / "meta.json"
        if not meta_path.exists():
            meta = await build(url, args.n, args.dim)
            meta_path.write_text(json.dumps(meta))
        meta = json.loads(meta_path.read_text())
        trees: list[str] = args.tree or ["."]
        out: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
        raws: list[dict[str, float]] = []
        for r in range(args.rounds):
            raw = await raw_limit(url)
            raws.append(raw)
            print(f"round {r}: raw limit " + json.dumps({k: round(v, 3) for k, v in raw.items()}))
            for tree in trees:
                res = out[tree]
                if "host" in args.phase:
                    h = await asyncio.to_thread(run_child, tree, url, meta)
                    res.setdefault("host_to_first_recall_s", []).append(h["host_to_first_recall_s"])
                    res.setdefault("host_start_s", []).append(h["host_start_s"])
                    res.setdefault("host_cpu_s", []).append(h["cpu_s"])
                    res.setdefault("host_ratio", []).append(
                        h["host_to_first_recall_s"] / raw["raw_limit_s"]
                    )
                    print(
                        f"  {tree}: host start → first recall {h['host_to_first_recall_s']:.3f} s "
                        f"(CPU {h['cpu_s']:.2f}; {h['recovery']})",
                        flush=True,
                    )
                    show_steps(h["steps"])
                if "spawn" in args.phase:
                    log = data / f"worker-{len(out)}-{trees.index(tree)}.log"
                    s = await spawn_round(url, tree, meta["last_seq"], meta["cue"], log)
                    res.setdefault("spawn_to_first_recall_s", []).append(
                        s["spawn_to_first_recall_s"]
                    )
                    res.setdefault("spawn_cpu_s", []).append(s["cpu_s"])
                    res.setdefault("spawn_ratio", []).append(
                        s["spawn_to_first_recall_s"] / raw["raw_limit_s"]
                    )
                    print(
                        f"  {tree}: spawn → first recall {s['spawn_to_first_recall_s']:.3f} s "
                        f"(CPU {s['cpu_s']:.2f})",
                        flush=True,
                    )
                    for line in s["log"]:
                        print("      " + line, flush=True)
        print(
            "raw limit medians",
            {k: round(statistics.median(r[k] for r in raws), 4) for k in raws[0]},
        )
        for tree, res in out.items():
            print(tree, json.dumps({k: round(statistics.median(v), 4) for k, v in res.items()}))
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--data", default="/tmp/engram-restart-100k")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tree", action="append")
    p.add_argument("--phase", default="host,spawn")
    p.add_argument("--child-host", help=argparse.SUPPRESS)
    p.add_argument("--meta", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child_host:
        m = json.loads(Path(a.meta).read_text())
        child_host(a.child_host, m["last_seq"], m["cue"])
    else:
        asyncio.run(main(a))
