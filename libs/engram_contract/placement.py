"""Which workers host a space: rendezvous (highest-random-weight) hashing.

Every process that knows the same set of live workers computes the same hosts
for a space, with no coordinator: each (space, worker) pair gets a weight from a
stable hash, and a space's hosts are the workers with the highest weights. When a
worker joins, only the spaces for which it now ranks among the first
``replicas`` move to it (about ``replicas / workers`` of them); when one leaves,
only its spaces move, each to the worker ranked next. The first host in that
order is the space's *primary*: it alone writes snapshots, reinforcements, WAL
erasures and consolidations, so replicas do not duplicate work or race.

The hash is BLAKE2b, not Python's ``hash()`` (salted per process).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(space_id: str, worker_id: str) -> int:
    """The stable weight of ``worker_id`` for ``space_id`` (64 bits)."""
    digest = hashlib.blake2b(
        worker_id.encode(), digest_size=8, key=space_id.encode()[:64], person=b"engram-place"
    ).digest()
    return int.from_bytes(digest, "big")


def ranked(space_id: str, workers: Iterable[str]) -> list[str]:
    """Every worker in ``workers``, best host of ``space_id`` first (ties, which a
    64-bit hash makes vanishingly rare, are broken by worker id)."""
    return sorted(set(workers), key=lambda w: (-weight(space_id, w), w))


def hosts(space_id: str, workers: Iterable[str], replicas: int) -> list[str]:
    """The workers that host ``space_id``: the first ``replicas`` of
    :func:`ranked` (every worker when there are fewer); the primary first."""
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    return ranked(space_id, workers)[:replicas]


def primary(space_id: str, workers: Iterable[str]) -> str | None:
    """The host of ``space_id`` that writes for it, ``None`` without workers."""
    order = ranked(space_id, workers)
    return order[0] if order else None
