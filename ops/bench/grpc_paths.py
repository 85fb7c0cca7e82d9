"""gRPC round trips for the bench. The figures use grpcio's blocking channel
(C-core) driven from a thread while the event loop waits: the lean client, as
``keepalive.py`` is for HTTP, so that they measure the gateway's gRPC path and
not a Python client's. The asyncio channel (what the SDK uses) costs more per
call on the client side; ``engram grpc recall, asyncio client`` shows how much."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import grpc.aio

from engram_contract.messages import RecallMode

RECALL = "/engram.v1.MemoryService/Recall"
HEALTH = "/grpc.health.v1.Health/Check"


def _rotate(
    call: Callable[[bytes], object],
    bodies: dict[RecallMode, list[bytes]],
    samples: int,
    warmup: int,
) -> dict[RecallMode, list[float]]:
    """As ``recall_paths.time_modes``: the modes alternate, their order rotating."""
    modes = list(bodies)
    times: dict[RecallMode, list[float]] = {m: [] for m in modes}
    for i in range(warmup + samples):
        for j in range(len(modes)):
            mode = modes[(i + j) % len(modes)]
            body = bodies[mode][i % len(bodies[mode])]
            t0 = time.perf_counter()
            call(body)
            elapsed = time.perf_counter() - t0
            if i >= warmup:
                times[mode].append(elapsed)
    return times


def _blocking(
    target: str, method: str, run: Callable[[Callable[[bytes], object]], object]
) -> object:
    with grpc.insecure_channel(target) as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        return run(lambda body: stub(body, timeout=10.0))


async def recall_times(
    target: str, bodies: dict[RecallMode, list[bytes]], samples: int, warmup: int
) -> dict[RecallMode, list[float]]:
    """Recall in every mode over the blocking channel (serialized requests in,
    answers not parsed, as the other paths')."""

    def run(call: Callable[[bytes], object]) -> dict[RecallMode, list[float]]:
        return _rotate(call, bodies, samples, warmup)

    times = await asyncio.to_thread(_blocking, target, RECALL, run)
    assert isinstance(times, dict)
    return times


async def asyncio_recall_times(
    target: str, bodies: list[bytes], samples: int, warmup: int
) -> list[float]:
    """Recall over grpcio's asyncio channel, in this event loop."""
    out = []
    async with grpc.aio.insecure_channel(target) as channel:
        recall: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(RECALL)
        for i in range(warmup + samples):
            t0 = time.perf_counter()
            await recall(bodies[i % len(bodies)], timeout=10.0)
            if i >= warmup:
                out.append(time.perf_counter() - t0)
    return out


async def health_times(target: str, samples: int, warmup: int) -> list[float]:
    """``grpc.health.v1.Health/Check`` of the server (an empty request): the floor."""

    def run(call: Callable[[bytes], object]) -> list[float]:
        out = []
        for i in range(warmup + samples):
            t0 = time.perf_counter()
            call(b"")
            if i >= warmup:
                out.append(time.perf_counter() - t0)
        return out

    times = await asyncio.to_thread(_blocking, target, HEALTH, run)
    assert isinstance(times, list)
    return times
