"""Recall: cue → seeds from the vector index → spreading activation over the
association graph → scores (activation × confidence × retention) → the k best
(see docs/recall.md). Reads one space's state; call it with every applied vector
indexed (in a host, under the index lock: :meth:`SpaceHost.with_index`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engram_contract.messages import (
    RecallMode,
    RecallRequest,
    RecallResult,
    RecallWire,
    TraceStep,
    as_utc,
)
from engram_worker.core.activation import Reached, SpreadParams, path, retention, spread
from engram_worker.core.export import to_memory
from engram_worker.core.index import EXACT_SEARCH_BELOW
from engram_worker.core.records import StoredMemory
from engram_worker.core.similarity import similarities

if TYPE_CHECKING:
    from engram_worker.core.state import SpaceState


@dataclass(frozen=True, slots=True)
class RecallQuery:
    """What to recall, besides the cue (see :class:`RecallRequest`)."""

    k: int = 10
    mode: RecallMode = "similarity"
    seed_k: int = 10
    spread: SpreadParams = field(default_factory=SpreadParams)
    hybrid_weight: float = 0.5
    tags: tuple[str, ...] = ()
    since: float | None = None  # occurred_at bounds, seconds since the epoch
    until: float | None = None
    trace: bool = False

    @classmethod
    def of(cls, req: RecallRequest | RecallWire) -> RecallQuery:
        return cls(
            k=req.k,
            mode=req.mode,
            seed_k=req.seed_k,
            spread=SpreadParams(
                max_hops=req.max_hops,
                hop_decay=req.hop_decay,
                threshold=req.threshold,
                max_fanout=req.max_fanout,
            ),
            hybrid_weight=req.hybrid_weight,
            tags=tuple(req.tags),
            since=None if req.since is None else as_utc(req.since).timestamp(),
            until=None if req.until is None else as_utc(req.until).timestamp(),
            trace=req.trace,
        )


def clip(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def recall(
    state: SpaceState,
    cue: np.ndarray,
    k: int,
    query: RecallQuery | None = None,
    now: float | None = None,
) -> list[RecallResult]:
    """The ``k`` best memories for ``cue`` (see docs/recall.md).

    ``query`` defaults to plain similarity; ``now`` (seconds since the epoch) is
    the time the forgetting curve is measured to (``None``: no decay). Ties are
    broken by stream order, so replicas and replays answer identically."""
    q = query or RecallQuery(k=k)
    if cue.shape != (state.dim,):
        raise ValueError(f"embedding has {cue.shape[0]} values; space has dim {state.dim}")
    cue = cue.astype(np.float32)
    graph = state.graph  # flushes, so every applied memory is searchable
    allowed = state.records.matching(q.tags, q.since, q.until)
    if allowed is not None and not allowed:
        return []
    if q.mode == "similarity":
        reached: dict[int, Reached] = {}
        pool = nearest(state, cue, k, allowed)
        act = {key: state.relevance(sim) for key, sim in pool.items()}
    else:
        seeds = max(q.seed_k, k)
        if q.mode == "hybrid":  # one search for the seeds and the candidates
            wide = nearest(state, cue, max(seeds, 4 * k, 32), None)
            pool = dict(itertools.islice(wide.items(), seeds))
        else:
            pool = nearest(state, cue, seeds, None)
        if allowed is not None:
            # the best matching memories are seeds too, so that k results exist
            # whenever k memories match
            pool.update(nearest(state, cue, k, allowed))
        seeded = {key: state.relevance(sim) for key, sim in pool.items()}
        reached = spread(seeded, graph.neighbours, q.spread)
        if q.mode == "spreading":
            act = {key: r.activation for key, r in reached.items()}
        else:
            act = _hybrid(state, cue, k, q, pool, wide, reached, allowed)
    top = _best(state, act, k, allowed, now)
    sims = _similarities(state, cue, [t[2].key for t in top], pool)
    return [
        RecallResult(
            memory=to_memory(state, rec),
            score=min(max(score, 0.0), 1.0),
            similarity=sim,
            activation=a,
            confidence=rec.confidence * kept,
            retention=kept,
            hops=reached[rec.key].hops if rec.key in reached else 0,
            trace=_trace(state, reached, rec.key, sim) if q.trace else None,
        )
        for (score, a, rec, kept), sim in zip(top, sims, strict=True)
    ]


def memory_retention(state: SpaceState, rec: StoredMemory, now: float) -> float:
    """How much of ``rec``'s confidence is left at ``now`` (the forgetting curve,
    from its last recall or, never recalled, from when it was stored)."""
    since = rec.last_recall or rec.created_at
    return retention(now - since.timestamp(), rec.recalls, state.decay)


def _best(
    state: SpaceState, act: dict[int, float], k: int, allowed: set[int] | None, now: float | None
) -> list[tuple[float, float, StoredMemory, float]]:
    """The ``k`` best ``(score, activation, record, retention)`` by score, then
    activation, then stream order. Retention (≤ 1) is only computed while a
    candidate's activation × confidence could still beat the k-th score."""
    by_key = state.records.by_key
    bounded = []
    for key, a in act.items():
        if allowed is not None and key not in allowed:
            continue
        rec = by_key.get(key)
        if rec is not None:
            bounded.append((a * rec.confidence, a, rec))
    bounded.sort(key=lambda t: (-t[0], -t[1], t[2].seq))
    if now is None:
        return [(bound, a, rec, 1.0) for bound, a, rec in bounded[:k]]
    scored: list[tuple[float, float, StoredMemory, float]] = []
    kth = -1.0
    for bound, a, rec in bounded:
        if len(scored) >= k and bound < kth:
            break  # neither this nor any later one can make the k best
        kept = memory_retention(state, rec, now)
        scored.append((bound * kept, a, rec, kept))
        if len(scored) >= k:
            scored.sort(key=lambda t: (-t[0], -t[1], t[2].seq))
            del scored[k:]
            kth = scored[-1][0]
    scored.sort(key=lambda t: (-t[0], -t[1], t[2].seq))
    return scored[:k]


def nearest(
    state: SpaceState, cue: np.ndarray, count: int, allowed: set[int] | None
) -> dict[int, float]:
    """The ``count`` most similar live memories (among ``allowed``), key → similarity.
    With a filter the search widens until ``count`` pass (or all were seen), so
    a filter never hides a match."""
    by_key, index = state.records.by_key, state.index
    size = len(index)
    if allowed is not None and len(allowed) <= EXACT_SEARCH_BELOW:
        keys = sorted(allowed)
        exact = _vector_sims(state, cue, keys)
        order = sorted(range(len(keys)), key=lambda i: (-exact[i], by_key[keys[i]].seq))
        return {keys[i]: exact[i] for i in order[:count]}
    # a few more than asked: near-ties at the cut are settled by stream order
    # below, not by the order the search found them in (replicas and replays
    # must answer alike). Up to ~60 a search costs what one for 10 does; 160
    # (4 × hybrid's 40) cost twice as much (measured), so a fixed slack
    want = max(count + 16, 32) if allowed is None else max(4 * count, 64)
    while True:
        found, sims = index.search(cue, want)
        hits = [
            (sim, key)
            for key, sim in zip(found.tolist(), sims.tolist(), strict=True)
            if key in by_key and (allowed is None or key in allowed)
        ]
        if len(hits) >= count or want >= size:
            hits.sort(key=lambda t: (-t[0], by_key[t[1]].seq))
            return {key: sim for sim, key in hits[:count]}
        want = min(4 * want, size)


def _vector_sims(state: SpaceState, cue: np.ndarray, keys: list[int]) -> list[float]:
    if not keys:
        return []
    indexed = state.index.get_many(keys)
    vectors = np.stack(
        [
            _vector(state, key) if vec is None else vec
            for key, vec in zip(keys, indexed, strict=True)
        ]
    )
    sims: list[float] = similarities(state.index.metric, cue, vectors).tolist()
    return sims


def _vector(state: SpaceState, key: int) -> np.ndarray:
    vec = state.indexing.vector(key)
    assert vec is not None, "a live memory has a vector"
    return vec


def _similarities(
    state: SpaceState, cue: np.ndarray, keys: list[int], known: dict[int, float]
) -> list[float]:
    missing = [key for key in keys if key not in known]
    found = dict(zip(missing, _vector_sims(state, cue, missing), strict=True))
    return [known[key] if key in known else found[key] for key in keys]


def _hybrid(
    state: SpaceState,
    cue: np.ndarray,
    k: int,
    q: RecallQuery,
    pool: dict[int, float],
    wide: dict[int, float],
    reached: dict[int, Reached],
    allowed: set[int] | None,
) -> dict[int, float]:
    """Hybrid activation: ``(1 − w) × similarity + w × spreading activation``,
    over the similarity candidates (the ``max(4k, 32)`` nearest) and what the
    spreading reached. A memory reached only through links has its own
    similarity computed when it could rank among the best."""
    w = q.hybrid_weight
    if allowed is None:
        pool = {**wide, **pool}
    else:
        matching = {key: sim for key, sim in wide.items() if key in allowed}
        if len(matching) < max(4 * k, 32):
            matching = nearest(state, cue, max(4 * k, 32), allowed)
        pool = {**matching, **pool}
    floor = min(pool.values(), default=0.0)  # what the rest are at most similar
    act = {
        key: (1.0 - w) * state.relevance(sim)
        + w * (reached[key].activation if key in reached else 0.0)
        for key, sim in pool.items()
    }
    others = sorted(
        (key for key in reached if key not in pool and (allowed is None or key in allowed)),
        key=lambda key: (-reached[key].activation, key),
    )[: 2 * k]
    for key, sim in zip(others, _vector_sims(state, cue, others), strict=True):
        act[key] = (1.0 - w) * state.relevance(min(sim, floor)) + w * reached[key].activation
    return act


def _trace(state: SpaceState, reached: dict[int, Reached], key: int, sim: float) -> list[TraceStep]:
    by_key = state.records.by_key
    if key not in reached:  # ranked by similarity alone
        return [
            TraceStep(
                memory_id=by_key[key].id,
                activation=state.relevance(sim),
                hops=0,
                weight=None,
                kind=None,
            )
        ]
    steps = []
    for node in path(reached, key):
        r = reached[node]
        steps.append(
            TraceStep(
                memory_id=by_key[node].id,
                activation=r.activation,
                hops=r.hops,
                weight=None if r.parent is None else r.weight,
                kind=None if r.parent is None else r.kind,
            )
        )
    return steps
