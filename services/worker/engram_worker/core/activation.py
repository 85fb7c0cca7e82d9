"""Spreading activation and the forgetting curve: the pure part of recall.

Recall seeds activation at the memories most similar to the cue (activation =
similarity, clipped to [0, 1]). Activation then spreads along the association
graph, hop by hop, breadth first: a memory with activation ``a`` passes ``a ×
weight × hop_decay`` to each of its ``max_fanout`` strongest neighbours, and
contributions below ``threshold`` are dropped. A memory is activated once, at
the hop where activation first reaches it: the paths of that length combine by
probabilistic OR (``1 − Π(1 − cᵢ)``), so activation stays in [0, 1] and grows
with every independent path, and nothing reaches it later. (Letting later hops
add to it made tightly linked groups — memories stored seconds apart — echo
activation among themselves until unrelated neighbours outshone what was
explicitly linked: measured in tests/unit/test_recall_quality.py.) It stops
after ``max_hops`` hops, or when nothing new was reached.

A memory's score is its activation times its confidence decayed by the time
since it was last recalled (or stored): a two-component forgetting curve, fast
until a memory has been recalled a few times, slow after. Decay only ever lowers
confidence.

Every loop runs in key order, so the same graph and seeds give the same answer
on every replica and after every replay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: a memory's neighbours ``(key, weight, kind)`` by falling weight, the first ``limit``
Neighbours = Callable[[int, int], list[tuple[int, float, str]]]


@dataclass(frozen=True, slots=True)
class SpreadParams:
    max_hops: int = 2
    hop_decay: float = 0.5
    threshold: float = 0.05
    max_fanout: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.max_hops <= 4:
            raise ValueError("max_hops must be 0..4")
        if not 0.0 < self.hop_decay <= 1.0:
            raise ValueError("hop_decay must be in (0, 1]")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be in [0, 1]")
        if self.max_fanout < 1:
            raise ValueError("max_fanout must be at least 1")


@dataclass(slots=True)
class Reached:
    """How a memory was activated."""

    activation: float
    hops: int  # 0 for a seed
    parent: int | None = None  # the strongest contributor, one hop nearer a seed
    weight: float = 0.0  # the edge it came over
    kind: str = ""


def spread(
    seeds: Mapping[int, float], neighbours: Neighbours, params: SpreadParams
) -> dict[int, Reached]:
    """Activation of every memory reached from ``seeds`` (key → activation)."""
    decay, threshold, fanout = params.hop_decay, params.threshold, params.max_fanout
    reached: dict[int, Reached] = {}
    # seeds too weak to spread count as seeds only if nothing reaches them: a
    # memory that is activated through its links is reported by that path
    weak: dict[int, float] = {}
    for key, a in seeds.items():
        a = min(max(a, 0.0), 1.0)
        if a >= threshold:
            reached[key] = Reached(activation=a, hops=0)
        else:
            weak[key] = a
    frontier = sorted(reached)
    for hop in range(1, params.max_hops + 1):
        incoming: dict[int, list[tuple[float, int, float, str]]] = {}
        for u in frontier:
            src = reached[u]
            for v, weight, kind in neighbours(u, fanout):
                c = src.activation * weight * decay
                if c < threshold:
                    break  # neighbours come by falling weight: the rest are weaker
                if v in reached:
                    continue  # settled at an earlier hop (its source among them)
                incoming.setdefault(v, []).append((c, u, weight, kind))
        if not incoming:
            break
        frontier = sorted(incoming)
        for v in frontier:
            contribs = incoming[v]
            # probabilistic OR, 1 − Π(1 − cᵢ), through logs: exact for tiny cᵢ too
            gained = (
                contribs[0][0]
                if len(contribs) == 1
                else -math.expm1(math.fsum(math.log1p(-c) for c, _, _, _ in contribs))
            )
            before = weak.pop(v, 0.0)
            c, u, weight, kind = max(contribs, key=lambda t: (t[0], -t[1]))
            reached[v] = Reached(
                activation=min(before + (1.0 - before) * gained, 1.0),
                hops=hop,
                parent=u,
                weight=weight,
                kind=kind,
            )
    for key in sorted(weak):
        reached[key] = Reached(activation=weak[key], hops=0)
    return reached


def path(reached: Mapping[int, Reached], key: int) -> list[int]:
    """The activation path from a seed to ``key`` (seed first)."""
    out = [key]
    seen = {key}
    node = reached[key]
    while node.parent is not None and node.parent not in seen:
        out.append(node.parent)
        seen.add(node.parent)
        node = reached[node.parent]
    out.reverse()
    return out


# -- the forgetting curve ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecayParams:
    fast_half_life_s: float = 86_400.0  # a day: memories never recalled fade fast
    slow_half_life_s: float = 30 * 86_400.0  # a month: once recalled a few times
    settle_after: int = 3  # recalls until a memory decays at the slow rate alone

    def __post_init__(self) -> None:
        if not 0.0 < self.fast_half_life_s <= self.slow_half_life_s:
            raise ValueError("half-lives must satisfy 0 < fast <= slow")
        if self.settle_after < 1:
            raise ValueError("settle_after must be at least 1")


def retention(age_s: float, recalls: int, params: DecayParams) -> float:
    """How much of a memory's confidence is left ``age_s`` seconds after it was
    last recalled (or stored), in [0, 1]. Two components, as in Engram's memory
    model: a fast one whose share shrinks with every recall and a slow one that
    takes over after ``settle_after`` recalls."""
    age = max(age_s, 0.0)  # a clock behind the WAL never makes memories fresher
    slow_share = min(max(recalls, 0) / params.settle_after, 1.0)
    fast = math.exp2(-age / params.fast_half_life_s)
    slow = math.exp2(-age / params.slow_half_life_s)
    return min(max((1.0 - slow_share) * fast + slow_share * slow, 0.0), 1.0)
