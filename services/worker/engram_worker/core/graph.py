"""A space's association graph: weighted, undirected edges between memories.

Nodes are the memories' index keys (ints: cheaper to hold and hash than ids).
An edge has a weight in (0, 1] and a kind: ``semantic`` (k nearest neighbours
when a memory is stored), ``temporal`` (stored close in time), ``consolidated``
(a semantic memory and its members) or whatever an explicit link names
(``related`` by default). One effective edge per pair: derived links keep the
larger weight, an explicit link sets it (a client may weaken an association it
made); see :class:`AssociationGraph`.

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


Edge = tuple[float, str, bool]  # weight, kind, explicit


class AssociationGraph:
    """Adjacency maps ``key → {neighbour key: (weight, kind, explicit)}``, kept
    symmetric.

    Two layers, so that the order links arrive in never matters (semantic links
    are computed when a batch is indexed, which may come before or after an
    explicit link in the WAL): derived links (semantic, temporal, consolidated)
    merge by taking the larger ``(weight, kind)``; an explicit link overrides
    whatever was derived for its pair, and the derived edge it covers is kept
    aside (``_shadow``) in case the explicit one is removed.
    """

    __slots__ = ("_adj", "_shadow", "_sorted")

    def __init__(self) -> None:
        self._adj: dict[int, dict[int, Edge]] = {}
        self._shadow: dict[tuple[int, int], tuple[float, str]] = {}
        # neighbours by falling weight, built on first use after a change
        self._sorted: dict[int, list[tuple[int, float, str]]] = {}

    def __len__(self) -> int:
        """The number of edges."""
        return sum(len(n) for n in self._adj.values()) // 2

    def __contains__(self, key: object) -> bool:
        return key in self._adj

    def _set(self, a: int, b: int, edge: Edge) -> None:
        self._adj.setdefault(a, {})[b] = edge
        self._adj.setdefault(b, {})[a] = edge
        self._sorted.pop(a, None)
        self._sorted.pop(b, None)

    def link(self, a: int, b: int, weight: float, kind: str, *, explicit: bool = False) -> bool:
        """Add the edge a–b, derived (kept if stronger than what is there) or
        explicit (set, whatever was there). Returns whether the effective edge
        changed. Self-links are ignored."""
        if a == b:
            return False
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"edge weight {weight!r} is outside (0, 1]")
        pair = (a, b) if a < b else (b, a)
        old = self._adj.get(a, {}).get(b)
        if explicit:
            if old is not None and not old[2]:
                self._shadow[pair] = (old[0], old[1])
            if old == (weight, kind, True):
                return False
            self._set(a, b, (weight, kind, True))
            return True
        if old is not None and old[2]:  # under an explicit link: remember it only
            shadow = self._shadow.get(pair)
            if shadow is None or shadow < (weight, kind):
                self._shadow[pair] = (weight, kind)
            return False
        if old is not None and (old[0], old[1]) >= (weight, kind):
            return False
        self._set(a, b, (weight, kind, False))
        return True

    def unlink(self, a: int, b: int, *, explicit_only: bool = False) -> bool:
        """Remove the explicit edge a–b (the derived one it covered comes back),
        or the derived one unless ``explicit_only``; returns whether an edge went."""
        old = self._adj.get(a, {}).get(b)
        if old is None or (explicit_only and not old[2]):
            return False
        pair = (a, b) if a < b else (b, a)
        shadow = self._shadow.pop(pair, None) if old[2] else None
        if shadow is not None:
            self._set(a, b, (shadow[0], shadow[1], False))
            return True
        del self._adj[a][b]
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
            self._shadow.pop((key, other) if key < other else (other, key), None)
        return len(nbrs)

    def edge(self, a: int, b: int) -> Edge | None:
        return self._adj.get(a, {}).get(b)

    def degree(self, key: int) -> int:
        return len(self._adj.get(key, ()))

    def neighbours(self, key: int) -> list[tuple[int, float, str]]:
        """``(neighbour, weight, kind)`` by falling weight, ties by key (so every
        replica and every replay walks them in the same order)."""
        cached = self._sorted.get(key)
        if cached is None:
            cached = sorted(
                ((k, w, kind) for k, (w, kind, _) in self._adj.get(key, {}).items()),
                key=lambda t: (-t[1], t[0]),
            )
            self._sorted[key] = cached
        return cached

    def edges(self) -> Iterator[tuple[int, int, float, str, bool]]:
        """Every edge once, as ``(a, b, weight, kind, explicit)`` with ``a < b``, in
        key order; a derived edge covered by an explicit one follows it."""
        for a in sorted(self._adj):
            for b, (w, kind, explicit) in sorted(self._adj[a].items()):
                if a < b:
                    yield a, b, w, kind, explicit
                    shadow = self._shadow.get((a, b)) if explicit else None
                    if shadow is not None:
                        yield a, b, shadow[0], shadow[1], False

    # -- snapshots ---------------------------------------------------------

    _COLUMNS = ("a", "b", "weight", "kind", "explicit")

    def to_columns(self) -> dict[str, list[Any]]:
        cols: dict[str, list[Any]] = {name: [] for name in self._COLUMNS}
        for row in self.edges():
            for name, value in zip(self._COLUMNS, row, strict=True):
                cols[name].append(value)
        return cols

    @classmethod
    def from_columns(cls, cols: dict[str, list[Any]], keys: set[int]) -> AssociationGraph:
        """The graph a snapshot holds; every edge must join two live ``keys``."""
        try:
            columns = [cols[c] for c in cls._COLUMNS]
        except (KeyError, TypeError):
            raise GraphInvalid("edges lack a column") from None
        if len({len(c) for c in columns}) > 1:
            raise GraphInvalid("edge columns differ in length")
        graph = cls()
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
                seen.add((a, b, explicit))
                graph.link(a, b, w, kind, explicit=explicit)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, GraphInvalid):
                raise
            raise GraphInvalid(f"unreadable edge: {exc}") from None
        return graph

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AssociationGraph)
            and self._adj == other._adj
            and self._shadow == other._shadow
        )

    __hash__ = None  # type: ignore[assignment]
