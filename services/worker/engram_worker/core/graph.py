"""A space's association graph: weighted, undirected edges between memories.

Nodes are the memories' index keys (ints: cheaper to hold and hash than ids).
An edge has a weight in (0, 1] and a kind: ``semantic`` (k nearest neighbours
when a memory is stored), ``temporal`` (stored close in time), ``consolidated``
(a semantic memory and its members) or whatever an explicit link names
(``related`` by default). One edge per pair: linking a pair again keeps the
larger weight (so the result does not depend on the order of the links), except
an explicit link, which sets it (a client may weaken an association it made).

Pure: no NATS, no numpy; the fold, the snapshot and recall use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

SEMANTIC = "semantic"
TEMPORAL = "temporal"
CONSOLIDATED = "consolidated"
RELATED = "related"  # an explicit link without a kind
DERIVED_KINDS = frozenset({SEMANTIC, TEMPORAL, CONSOLIDATED})


class GraphInvalid(ValueError):
    """Edges that cannot belong to a graph (from a damaged or foreign snapshot)."""


class AssociationGraph:
    """Adjacency maps ``key → {neighbour key: (weight, kind)}``, kept symmetric."""

    __slots__ = ("_adj", "_sorted")

    def __init__(self) -> None:
        self._adj: dict[int, dict[int, tuple[float, str]]] = {}
        # neighbours by falling weight, built on first use after a change
        self._sorted: dict[int, list[tuple[int, float, str]]] = {}

    def __len__(self) -> int:
        """The number of edges."""
        return sum(len(n) for n in self._adj.values()) // 2

    def __contains__(self, key: object) -> bool:
        return key in self._adj

    def link(self, a: int, b: int, weight: float, kind: str, *, replace: bool = False) -> bool:
        """Add or strengthen the edge a–b (``replace``: set its weight and kind).
        Returns whether the graph changed. Self-links are ignored."""
        if a == b:
            return False
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"edge weight {weight!r} is outside (0, 1]")
        old = self._adj.get(a, {}).get(b)
        if old is not None and not replace and old >= (weight, kind):
            return False  # (ties on weight go to the greater kind: order never matters)
        edge = (weight, kind)
        self._adj.setdefault(a, {})[b] = edge
        self._adj.setdefault(b, {})[a] = edge
        self._sorted.pop(a, None)
        self._sorted.pop(b, None)
        return True

    def unlink(self, a: int, b: int) -> bool:
        """Remove the edge a–b; returns whether there was one."""
        if self._adj.get(a, {}).pop(b, None) is None:
            return False
        del self._adj[b][a]
        for key in (a, b):
            if not self._adj[key]:
                del self._adj[key]
            self._sorted.pop(key, None)
        return True

    def remove_node(self, key: int) -> int:
        """Drop a memory and every edge it has (a forget); returns how many went."""
        nbrs = self._adj.pop(key, None)
        self._sorted.pop(key, None)
        if not nbrs:
            return 0
        for other in nbrs:
            peers = self._adj[other]
            del peers[key]
            if not peers:
                del self._adj[other]
            self._sorted.pop(other, None)
        return len(nbrs)

    def edge(self, a: int, b: int) -> tuple[float, str] | None:
        return self._adj.get(a, {}).get(b)

    def degree(self, key: int) -> int:
        return len(self._adj.get(key, ()))

    def neighbours(self, key: int) -> list[tuple[int, float, str]]:
        """``(neighbour, weight, kind)`` by falling weight, ties by key (so every
        replica and every replay walks them in the same order)."""
        cached = self._sorted.get(key)
        if cached is None:
            cached = sorted(
                ((k, w, kind) for k, (w, kind) in self._adj.get(key, {}).items()),
                key=lambda t: (-t[1], t[0]),
            )
            self._sorted[key] = cached
        return cached

    def edges(self) -> Iterator[tuple[int, int, float, str]]:
        """Every edge once, as ``(a, b, weight, kind)`` with ``a < b``, in key order."""
        for a in sorted(self._adj):
            for b, (w, kind) in sorted(self._adj[a].items()):
                if a < b:
                    yield a, b, w, kind

    # -- snapshots ---------------------------------------------------------

    def to_columns(self) -> dict[str, list[Any]]:
        a_col: list[int] = []
        b_col: list[int] = []
        w_col: list[float] = []
        kind_col: list[str] = []
        for a, b, w, kind in self.edges():
            a_col.append(a)
            b_col.append(b)
            w_col.append(w)
            kind_col.append(kind)
        return {"a": a_col, "b": b_col, "weight": w_col, "kind": kind_col}

    @classmethod
    def from_columns(cls, cols: dict[str, list[Any]], keys: set[int]) -> AssociationGraph:
        """The graph a snapshot holds; every edge must join two live ``keys``."""
        try:
            a_col, b_col, w_col, kind_col = (cols[c] for c in ("a", "b", "weight", "kind"))
        except (KeyError, TypeError):
            raise GraphInvalid("edges lack a column") from None
        if not len(a_col) == len(b_col) == len(w_col) == len(kind_col):
            raise GraphInvalid("edge columns differ in length")
        graph = cls()
        try:
            for a, b, w, kind in zip(a_col, b_col, w_col, kind_col, strict=True):
                a, b, w = int(a), int(b), float(w)
                if not (a < b and a in keys and b in keys and isinstance(kind, str) and kind):
                    raise GraphInvalid(f"edge {a}–{b} does not join two live memories")
                if graph.edge(a, b) is not None:
                    raise GraphInvalid(f"edge {a}–{b} appears twice")
                graph.link(a, b, w, kind)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, GraphInvalid):
                raise
            raise GraphInvalid(f"unreadable edge: {exc}") from None
        return graph

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AssociationGraph) and self._adj == other._adj

    __hash__ = None  # type: ignore[assignment]
