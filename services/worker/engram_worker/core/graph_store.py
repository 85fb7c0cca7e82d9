"""Where :class:`~engram_worker.core.graph.AssociationGraph` keeps its effective
edges: a frozen :class:`~engram_worker.core.graph_arrays.Adjacency` (most edges,
in arrays) plus the changes made since it was built, per memory, in small dicts.

The fold links every new memory to older ones, so changes arrive all the time;
when they outgrow a fraction of the frozen part (:data:`COMPACT_EVERY`) they are
merged into a new one (:func:`~engram_worker.core.graph_arrays.merge`: only the
changed rows are sorted again, the rest is copied). The cost of a merge grows with
the graph and the number of changes it absorbs grows with it too, so each change
costs O(1) amortised. Pure: numpy only.
"""

from __future__ import annotations

from itertools import chain, repeat
from operator import itemgetter
from typing import Any, cast

import numpy as np

from engram_worker.core.graph_arrays import (
    MAX_CODES,
    Adjacency,
    Code,
    GraphArrays,
    edge_arrays,
    merge,
    recode,
)

Edge = tuple[float, str, bool]  # weight, kind, explicit
Neighbour = tuple[int, float, str]

_ABSENT: Any = object()
_WEIGHT, _KIND, _EXPLICIT = itemgetter(0), itemgetter(1), itemgetter(2)

#: changes (one per memory and neighbour) kept beside the frozen part before a
#: merge: at least MIN_CHANGES, at most one per COMPACT_EVERY of its entries
COMPACT_EVERY = 16
MIN_CHANGES = 4096
#: neighbour lists of changed memories kept once built (the rest are read from the arrays)
SORTED_CACHE = 1024


class EdgeStore:
    """Effective edges, symmetric: the frozen ``base`` overridden by ``changes``
    (``key → {neighbour: edge, or None where a base edge was removed}``)."""

    __slots__ = (
        "base",
        "changes",
        "code_of",
        "count",
        "limit",
        "pending",
        "replaced",
        "sorted",
    )

    def __init__(self, base: Adjacency | None = None, count: int = 0) -> None:
        self.base = base if base is not None else Adjacency.empty([])
        self.code_of: dict[Code, int] = {c: i for i, c in enumerate(self.base.codes)}
        self.changes: dict[int, dict[int, Edge | None]] = {}
        self.pending = 0  # entries in changes
        self.replaced: list[tuple[int, int]] = []  # entries of base the changes replace
        self.count = count  # effective edges
        # neighbours of the changed memories by falling weight, built on first use
        self.sorted: dict[int, list[Neighbour]] = {}
        self.limit = max(MIN_CHANGES, self.base.entries // COMPACT_EVERY)

    def edge(self, a: int, b: int) -> Edge | None:
        got = self.changes.get(a)
        if got is not None:
            edge = got.get(b, _ABSENT)
            if edge is not _ABSENT:
                return cast(Edge | None, edge)
        if a >= self.base.rows or b >= self.base.rows:  # a memory newer than base
            return None
        return self.base.edge(a, b)

    def neighbours(self, key: int, limit: int | None = None) -> list[Neighbour]:
        if key not in self.changes:
            return self.base.neighbours(key, limit)
        cached = self.sorted.get(key)
        if cached is None:
            merged = {k: (w, kind) for k, w, kind in self.base.neighbours(key)}
            for k, e in self.changes[key].items():
                if e is None:
                    merged.pop(k, None)
                else:
                    merged[k] = (e[0], e[1])
            cached = sorted(
                ((k, w, kind) for k, (w, kind) in merged.items()), key=lambda t: (-t[1], t[0])
            )
            if len(self.sorted) >= SORTED_CACHE:
                self.sorted.clear()  # bounded: changed memories are many between merges
            self.sorted[key] = cached
        return cached if limit is None else cached[:limit]

    def degree(self, key: int) -> int:
        if key in self.changes:
            return len(self.neighbours(key))
        s, e = self.base.span(key)
        return e - s

    def register(self, kind: str, explicit: bool) -> None:
        """Make room for edges of ``(kind, explicit)``; raises ValueError when the
        graph already holds :data:`MAX_CODES` of them."""
        if (kind, explicit) in self.code_of:
            return
        if len(self.code_of) >= MAX_CODES:
            self.compact(recoding=True)  # drop the kinds no edge has any more
            if len(self.code_of) >= MAX_CODES:
                raise ValueError(f"a graph holds at most {MAX_CODES} kinds of link")
        self.code_of[kind, explicit] = len(self.base.codes)
        self.base.add((kind, explicit))

    def put(self, a: int, b: int, edge: Edge, new: bool) -> None:
        """Set the edge a–b (``new``: there was none)."""
        changes = self.changes
        got_a = changes.get(a)
        if got_a is None:
            changes[a] = got_a = {}
        got_b = changes.get(b)
        if got_b is None:
            changes[b] = got_b = {}
        if b not in got_a:  # the pair's first change (both directions change together)
            self.pending += 2
            if not new:  # it was in base
                self.replaced += ((a, b), (b, a))
        got_a[b] = got_b[a] = edge
        if self.sorted:
            self.sorted.pop(a, None)
            self.sorted.pop(b, None)
        if new:
            self.count += 1
        if self.pending > self.limit:
            self.compact()

    def remove(self, a: int, b: int) -> None:
        """Remove the edge a–b (there is one)."""
        in_base = self.base.edge(a, b) is not None
        for x, y in ((a, b), (b, a)):
            got = self.changes.get(x)
            if in_base:
                if got is None:
                    self.changes[x] = got = {}
                if y not in got:
                    self.pending += 1
                    self.replaced.append((x, y))
                got[y] = None
            else:
                assert got is not None
                del got[y]
                self.pending -= 1
                if not got:
                    del self.changes[x]
            self.sorted.pop(x, None)
        self.count -= 1
        if self.pending > self.limit:
            self.compact()

    def compact(self, *, recoding: bool = False) -> None:
        """Merge the changes into a new frozen part."""
        if self.changes:
            base = self.base
            dropped = []
            for x, y in self.replaced:
                s, _ = base.span(x)
                dropped.append(s + base.keys(x).index(y))
            rows_of = self.changes.values()
            lens = list(map(len, rows_of))
            nbrs = list(chain.from_iterable(rows_of))
            values: list[Edge | None] = list(chain.from_iterable(map(dict.values, rows_of)))
            rows = np.repeat(np.fromiter(self.changes, np.int64, len(lens)), lens)
            nbr = np.array(nbrs, np.int32)
            if None in values:  # removals of base entries: only dropped
                live = np.array([v is not None for v in values], bool)
                rows, nbr = rows[live], nbr[live]
                values = [v for v in values if v is not None]
            edges = cast(list[Edge], values)
            self.base = merge(
                base,
                rows,
                nbr,
                np.fromiter(map(_WEIGHT, edges), np.float64, len(edges)),
                self._codes(edges),
                np.array(dropped, np.int64),
            )
            self.changes, self.sorted, self.pending, self.replaced = {}, {}, 0, []
            self.limit = max(MIN_CHANGES, self.base.entries // COMPACT_EVERY)
        if recoding:
            self.base = recode(self.base)
            self.code_of = {c: i for i, c in enumerate(self.base.codes)}

    def _codes(self, edges: list[Edge]) -> np.ndarray:
        """The code of each edge's (kind, explicit), without a tuple per edge
        (explicit edges are few: they are looked up one by one)."""
        derived = {kind: code for (kind, explicit), code in self.code_of.items() if not explicit}
        codes = np.fromiter(map(derived.get, map(_KIND, edges), repeat(-1)), np.int16, len(edges))
        explicit = np.fromiter(map(_EXPLICIT, edges), bool, len(edges))
        for i in np.flatnonzero(explicit).tolist():
            codes[i] = self.code_of[edges[i][1], True]
        if (codes < 0).any():  # every kind is registered before it is put
            raise AssertionError("an edge of an unregistered kind")
        return codes.astype(np.uint8)

    def arrays(self, shadow: dict[tuple[int, int], tuple[float, str]]) -> GraphArrays:
        self.compact()
        return edge_arrays(self.base, shadow)
