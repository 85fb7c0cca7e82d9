"""Where the WAL fold spends its time: cProfile over ``SpaceState.apply_message``.

    .venv/bin/python ops/bench/profile_fold.py [--n 20000] [--top 30]

No server: the messages are the bench's own ``RememberCommand`` bodies (the bytes
``make bench`` publishes), held in memory with the subject and the JetStream reply
subject a consumer would see. Each message goes through what the worker's WAL
callback does before the index: ``position(msg.reply)``, the verb from the subject and
``apply_message``; buffered vectors are dropped, as in the bench's fold figure.
It prints the fold rate without the profiler (with Python's cyclic GC on, as in
the worker, and off, to show the collector's share), the fold's steps timed one by
one with the GC off (µs per message of pure work), then cProfile's functions by
own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import pstats
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench import parse_args
from ingest import remember_messages
from measure import NATS_SPACE, make_dataset
from nats.aio.msg import Msg

from engram_contract.embedders import get_embedder
from engram_contract.messages import SpaceRecord
from engram_contract.subjects import command_verb, stream_name
from engram_worker.core.state import SpaceState
from engram_worker.core.wal import decode, decode_command, fast_decode
from engram_worker.positions import position, stored_at


def messages(n: int, dim: int) -> list[Msg]:
    """The bench's remember commands as delivered JetStream messages (seq 1..n)."""
    data = make_dataset(parse_args(["--n", str(n), "--dim", str(dim)]))
    stream = stream_name(NATS_SPACE)
    ts = time.time_ns()
    out = []
    for seq, (subject, body, _) in enumerate(remember_messages(data, 0, n, "profile"), 1):
        reply = f"$JS.ACK.{stream}.consumer.1.{seq}.{seq}.{ts + seq}.{n - seq}"
        out.append(Msg(None, subject, reply, body))  # type: ignore[arg-type]
    return out


def fold(record: SpaceRecord, msgs: list[Msg]) -> SpaceState:
    state = SpaceState(record, get_embedder(record.embedder, record.dim))
    for i, msg in enumerate(msgs, 1):
        seq, stamp, _ = position(msg.reply)
        verb = command_verb(msg.subject)
        state.apply_message(verb, msg.data, seq, stored_at(stamp))
        if i % 4096 == 0:
            state.indexing.pending.clear()
    return state


def _per_msg_us(fn: Callable[[], Any], n: int, collect: bool = True) -> float:
    """Best of 3 runs of ``fn`` in µs per message, with the cyclic GC on or off."""
    best = float("inf")
    for _ in range(3):
        gc.collect()
        if not collect:
            gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return best / n * 1e6


def steps(record: SpaceRecord, template: list[Msg]) -> list[tuple[str, float]]:
    """The fold's parts, each timed alone over every message (best of 3)."""
    n = len(template)
    replies = [m.reply for m in template]
    subjects = [m.subject for m in template]
    bodies = [m.data for m in template]
    decoded = [decode("remember", b) for b in bodies]
    ts = datetime.now(UTC)
    rows = [
        ("position(msg.reply)", lambda: [position(r) for r in replies]),
        (
            "  (nats-py msg.metadata, for comparison)",
            lambda: [Msg.Metadata._from_reply(r) for r in replies],
        ),
        ("command_verb", lambda: [command_verb(s) for s in subjects]),
        (
            "fast_decode (msgspec: JSON + base64 + checks)",
            lambda: [fast_decode("remember", b) for b in bodies],
        ),
        (
            "  (the referee: json.loads + pydantic, for comparison)",
            lambda: [decode_command("remember", b) for b in bodies],
        ),
    ]
    out = [(name, _per_msg_us(fn, n, collect=False)) for name, fn in rows]

    def apply_all() -> None:
        state = SpaceState(record, get_embedder(record.embedder, record.dim))
        for seq, cmd in enumerate(decoded, 1):
            state.apply(cmd, seq, ts)

    out.append(("SpaceState.apply (decoded command → state)", _per_msg_us(apply_all, n, False)))
    return out


def fold_next(record: SpaceRecord, batches: list[list[Msg]]) -> SpaceState:
    return fold(record, batches.pop())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="messages (default 20000)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--top", type=int, default=30, help="functions listed")
    args = parser.parse_args()
    record = SpaceRecord(
        id=NATS_SPACE, dim=args.dim, embedder="hash-ngram-v1", created_at=datetime.now(UTC)
    )
    print(f"building {args.n} messages …", flush=True)
    template = messages(args.n, args.dim)

    def fresh() -> list[Msg]:  # metadata is memoised on the Msg: new objects each run
        return [Msg(None, m.subject, m.reply, m.data) for m in template]  # type: ignore[arg-type]

    for collect in (True, False):
        batches = [fresh() for _ in range(3)]  # one per run: metadata is memoised
        us = _per_msg_us(functools.partial(fold_next, record, batches), args.n, collect)
        print(
            f"fold without profiler, gc {'on ' if collect else 'off'}: "
            f"{1e6 / us:>7,.0f} msg/s, {us:5.1f} µs/msg (best of 3)"
        )
    print("\nsteps, each timed alone with the gc off (best of 3), µs per message:")
    for name, us in steps(record, template):
        print(f"  {name:<52} {us:>7.1f}")
    print()

    msgs = fresh()
    profiler = cProfile.Profile()
    profiler.enable()
    fold(record, msgs)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(args.top)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(args.top)


if __name__ == "__main__":
    main()
