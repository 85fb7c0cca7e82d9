"""The worker's own time per recall, from a NATS message handed to its query
callback to the reply handed to nats-py: a worker in this process (connected to a
running nats-server that holds the space ``--space``, its snapshot in place; no
other worker serving it), the callback called with a message object, the two
ways a recall is answered alternating request by request, and
``SpaceState.recall`` on the same state in the same rotation.

- ``inline``: as it arrives (:func:`engram_worker.queries.recall_now`);
- ``task``: in a task of its own, under the query semaphore and the space's
  read locks (what every recall went through before, and what a recall still
  goes through when others are in flight or it must wait).

    .venv/bin/python ops/bench/profile_query.py --nats-url nats://127.0.0.1:4222 --space s

Not a test: prints medians (µs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import numpy as np
from nats.aio.msg import Msg

from engram_contract.messages import encode_embedding
from engram_contract.settings import WorkerSettings
from engram_worker import queries, worker
from engram_worker.core.recall import RecallQuery
from engram_worker.worker import Worker


async def run(nats_url: str, space: str, samples: int, warmup: int) -> dict[str, float]:
    """The medians (s) of each way, and of ``SpaceState.recall``."""
    settings = WorkerSettings(nats_url=nats_url, worker_id="profile", metrics_port=0)
    w = Worker(settings)
    await w.start()
    host = w.hosts[space]
    rng = np.random.default_rng(7)
    cues = rng.standard_normal((256, host.state.dim)).astype(np.float32)
    cues /= np.linalg.norm(cues, axis=1, keepdims=True)
    bodies = [
        json.dumps(
            {
                "embedding_b64": encode_embedding(c),
                "k": 10,
                "mode": "similarity",
                "consistency": "eventual",
            }
        ).encode()
        for c in cues
    ]
    done: asyncio.Future[bytes] | None = None

    async def respond(self: Msg, data: bytes) -> None:
        assert done is not None
        done.set_result(data)

    real_respond = Msg.respond
    Msg.respond = respond  # type: ignore[method-assign]
    real_now = queries.recall_now

    def never(*_: Any) -> None:
        return None

    times: dict[str, list[float]] = {"inline": [], "task": [], "SpaceState.recall": []}
    query = RecallQuery(k=10, mode="similarity")
    for i in range(warmup + samples):
        for j, name in enumerate(("inline", "task", "SpaceState.recall")):
            cue_i = (i + 80 * j) % len(bodies)
            if name == "SpaceState.recall":
                t0 = time.perf_counter()
                host.state.recall(cues[cue_i], 10, query, time.time())
                elapsed = time.perf_counter() - t0
            else:
                setattr(worker, "recall_now", real_now if name == "inline" else never)  # noqa: B010
                done = asyncio.get_running_loop().create_future()
                msg = Msg(
                    w.nc, subject=f"spaces.{space}.q.recall", reply="_INBOX.x", data=bodies[cue_i]
                )
                t0 = time.perf_counter()
                await w._on_query(msg)
                reply = await done
                elapsed = time.perf_counter() - t0
                assert not reply.startswith(b'{"error"'), reply[:200]
            if i >= warmup:
                times[name].append(elapsed)
    setattr(worker, "recall_now", real_now)  # noqa: B010
    Msg.respond = real_respond  # type: ignore[method-assign]
    await w.stop()
    return {name: statistics.median(ts) for name, ts in times.items()}


async def main(args: argparse.Namespace) -> None:
    medians = await run(args.nats_url, args.space, args.samples, args.warmup)
    for name, m in medians.items():
        print(f"{name:18s} p50 {m * 1e6:8.1f} µs")
    core = medians["SpaceState.recall"]
    for name in ("inline", "task"):
        print(f"{name} − SpaceState.recall: {(medians[name] - core) * 1e6:.1f} µs")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--nats-url", required=True)
    p.add_argument("--space", required=True)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=100)
    asyncio.run(main(p.parse_args()))
