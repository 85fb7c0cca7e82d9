"""A space's association graph: weighted, undirected edges between memories.

Nodes are the memories' index keys (ints in [0, 2³¹): cheap to hold, and a row
number in the arrays). An edge has a weight in (0, 1] and a kind: ``semantic``
(k nearest neighbours when a memory is stored), ``temporal`` (stored close in
time), ``consolidated`` (a semantic memory and its members) or whatever an
explicit link names (``related`` by default). One effective edge per pair:
derived links keep the larger weight, an explicit link sets it (a client may
weaken an association it made); see :class:`AssociationGraph`.

The edges live in arrays, not in a Python object each (:mod:`.graph_store`,
:mod:`.graph_arrays`): about 13 bytes per edge and direction.

Pure: no NATS; the fold, the snapshot and recall use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from engram_worker.core.graph_arrays import (
    MAX_CODES,
    MAX_KEY,
    GraphArrays,
    GraphInvalid,
    checked,
    from_pairs,
)
from engram_worker.core.graph_store import Edge, EdgeStore, Neighbour

SEMANTIC = "semantic"
TEMPORAL = "temporal"
CONSOLIDATED = "consolidated"
RELATED = "related"  # an explicit link without a kind
DERIVED_KINDS = frozenset({SEMANTIC, TEMPORAL, CONSOLIDATED})

__all__ = [
    "CONSOLIDATED",
    "DERIVED_KINDS",
    "RELATED",
    "SEMANTIC",
    "TEMPORAL",
    "AssociationGraph",
    "Edge",
    "GraphArrays",
    "GraphInvalid",
]


class AssociationGraph:
    """Effective edges ``a–b → (weight, kind, explicit)``, kept symmetric.

    Two layers, so that the order links arrive in never matters (semantic links
    are computed when a batch is indexed, which may come before or after an
    explicit link in the WAL): derived links (semantic, temporal, consolidated)
    merge by taking the larger ``(weight, kind)``; an explicit link overrides
    whatever was derived for its pair, and the derived edge it covers is kept
    aside (``_shadow``) in case the explicit one is removed.
    """

    __slots__ = ("_edges", "_shadow")

    def __init__(self) -> None:
        self._edges = EdgeStore()
        self._shadow: dict[tuple[int, int], tuple[float, str]] = {}

    def __len__(self) -> int:
        """The number of edges."""
        return self._edges.count

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int | np.integer) and self._edges.degree(int(key)) > 0

    def link(self, a: int, b: int, weight: float, kind: str, *, explicit: bool = False) -> bool:
        """Add the edge a–b, derived (kept if stronger than what is there) or
        explicit (set, whatever was there). Returns whether the effective edge
        changed. Self-links are ignored."""
        if a == b:
            return False
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"edge weight {weight!r} is outside (0, 1]")
        if not (0 <= a <= MAX_KEY and 0 <= b <= MAX_KEY):
            raise ValueError(f"memory keys {a!r}, {b!r} are not both in [0, {MAX_KEY}]")
        weight = float(weight)
        edges = self._edges
        old = edges.edge(a, b)
        if explicit:
            if old is not None and not old[2]:
                self._shadow[(a, b) if a < b else (b, a)] = (old[0], old[1])
            if old == (weight, kind, True):
                return False
            if (kind, True) not in edges.code_of:
                edges.register(kind, True)
            edges.put(a, b, (weight, kind, True), old is None)
            return True
        if old is not None:
            if old[2]:  # under an explicit link: remember it only
                pair = (a, b) if a < b else (b, a)
                shadow = self._shadow.get(pair)
                if shadow is None or shadow < (weight, kind):
                    self._shadow[pair] = (weight, kind)
                return False
            if (old[0], old[1]) >= (weight, kind):
                return False
        if (kind, False) not in edges.code_of:
            edges.register(kind, False)
        edges.put(a, b, (weight, kind, False), old is None)
        return True

    def unlink(self, a: int, b: int, *, explicit_only: bool = False) -> bool:
        """Remove the explicit edge a–b (the derived one it covered comes back),
        or the derived one unless ``explicit_only``; returns whether an edge went."""
        old = self._edges.edge(a, b)
        if old is None or (explicit_only and not old[2]):
            return False
        pair = (a, b) if a < b else (b, a)
        shadow = self._shadow.pop(pair, None) if old[2] else None
        if shadow is not None:
            if (shadow[1], False) not in self._edges.code_of:  # only ever aside so far
                self._edges.register(shadow[1], False)
            self._edges.put(a, b, (shadow[0], shadow[1], False), False)
        else:
            self._edges.remove(a, b)
        return True

    def remove_node(self, key: int) -> int:
        """Drop a memory and every edge it has (a forget); returns how many went."""
        nbrs = self._edges.neighbours(key)
        for other, _, _ in nbrs:
            self._edges.remove(key, other)
            self._shadow.pop((key, other) if key < other else (other, key), None)
        return len(nbrs)

    def edge(self, a: int, b: int) -> Edge | None:
        return self._edges.edge(a, b)

    def degree(self, key: int) -> int:
        return self._edges.degree(key)

    def neighbours(self, key: int, limit: int | None = None) -> list[Neighbour]:
        """``(neighbour, weight, kind)`` by falling weight, ties by key (so every
        replica and every replay walks them in the same order); the first
        ``limit`` of them (spreading activation reads the strongest few)."""
        return self._edges.neighbours(key, limit)

    def edges(self) -> Iterator[tuple[int, int, float, str, bool]]:
        """Every edge once, as ``(a, b, weight, kind, explicit)`` with ``a < b``, in
        key order; a derived edge covered by an explicit one follows it."""
        arrays = self.to_arrays()
        kinds = arrays.kinds
        yield from zip(
            arrays.a.tolist(),
            arrays.b.tolist(),
            arrays.weight.tolist(),
            [kinds[k] for k in arrays.kind.tolist()],
            arrays.explicit.tolist(),
            strict=True,
        )

    # -- snapshots ---------------------------------------------------------

    _COLUMNS = ("a", "b", "weight", "kind", "explicit")

    def to_arrays(self) -> GraphArrays:
        """Every edge once, in :meth:`edges` order, as arrays (O(E), vectorised)."""
        return self._edges.arrays(self._shadow)

    @classmethod
    def from_arrays(cls, arrays: GraphArrays, keys: np.ndarray) -> AssociationGraph:
        """The graph a snapshot holds, from :meth:`to_arrays`; every edge must join
        two live ``keys`` (int64). Raises :class:`GraphInvalid`. Vectorised: no
        Python call per edge (only per shadowed derived edge)."""
        a, b, weight, kind, explicit, shadow = checked(arrays, keys)
        kinds = tuple(arrays.kinds)
        graph = cls()
        if shadow.any():
            for i in np.flatnonzero(shadow).tolist():
                graph._shadow[int(a[i]), int(b[i])] = (float(weight[i]), kinds[kind[i]])
            a, b, weight, kind, explicit = (c[~shadow] for c in (a, b, weight, kind, explicit))
        combo = kind * 2 + explicit
        used = np.flatnonzero(np.bincount(combo, minlength=1))
        if len(used) > MAX_CODES:
            raise GraphInvalid(f"more than {MAX_CODES} kinds of link")
        lut = np.zeros(int(used.max(initial=0)) + 1, np.uint8)
        lut[used] = np.arange(len(used))
        codes = [(kinds[c >> 1], bool(c & 1)) for c in used.tolist()]
        graph._edges = EdgeStore(from_pairs(a, b, weight, lut[combo], codes), len(a))
        return graph

    def to_columns(self) -> dict[str, list[Any]]:
        cols: dict[str, list[Any]] = {name: [] for name in self._COLUMNS}
        for row in self.edges():
            for name, value in zip(self._COLUMNS, row, strict=True):
                cols[name].append(value)
        return cols

    @classmethod
    def from_columns(cls, cols: dict[str, list[Any]], keys: set[int]) -> AssociationGraph:
        """The graph a snapshot holds; every edge must join two live ``keys``.
        Each row is checked here, then the graph is built like :meth:`from_arrays`."""
        try:
            columns = [cols[c] for c in cls._COLUMNS]
        except (KeyError, TypeError):
            raise GraphInvalid("edges lack a column") from None
        if len({len(c) for c in columns}) > 1:
            raise GraphInvalid("edge columns differ in length")
        rows: list[tuple[int, int, float, int, bool]] = []
        kinds: dict[str, int] = {}
        seen: set[tuple[int, int, bool]] = set()
        try:
            for a, b, w, kind, explicit in zip(*columns, strict=True):
                a, b, w = int(a), int(b), float(w)
                if not (
                    a < b
                    and a in keys
                    and b in keys
                    and isinstance(kind, str)
                    and kind
                    and isinstance(explicit, bool)
                ):
                    raise GraphInvalid(f"edge {a}–{b} does not join two live memories")
                if (a, b, explicit) in seen:
                    raise GraphInvalid(f"edge {a}–{b} appears twice")
                if not 0.0 < w <= 1.0:
                    raise ValueError(f"edge weight {w!r} is outside (0, 1]")
                seen.add((a, b, explicit))
                rows.append((a, b, w, kinds.setdefault(kind, len(kinds)), explicit))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, GraphInvalid):
                raise
            raise GraphInvalid(f"unreadable edge: {exc}") from None
        a_, b_, w_, kind_, explicit_ = zip(*rows, strict=True) if rows else ((),) * 5
        arrays = GraphArrays(
            np.array(a_, np.int64),
            np.array(b_, np.int64),
            np.array(w_, np.float64),
            np.array(kind_, np.int64),  # may exceed uint8: refused below if it does
            tuple(kinds),
            np.array(explicit_, bool),
        )
        return cls.from_arrays(arrays, np.fromiter(keys, np.int64, len(keys)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AssociationGraph):
            return False
        if len(self) != len(other) or self._shadow != other._shadow:
            return False
        mine, theirs = self.to_arrays(), other.to_arrays()
        return (
            np.array_equal(mine.a, theirs.a)
            and np.array_equal(mine.b, theirs.b)
            and np.array_equal(mine.weight, theirs.weight)
            and np.array_equal(mine.explicit, theirs.explicit)
            and np.array_equal(
                np.array(mine.kinds, dtype=object)[mine.kind],
                np.array(theirs.kinds, dtype=object)[theirs.kind],
            )
        )

    __hash__ = None  # type: ignore[assignment]
