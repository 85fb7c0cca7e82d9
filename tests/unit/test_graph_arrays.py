"""The association graph in arrays: it behaves exactly like adjacency dicts (the
reference model below is the graph as it was before it moved into arrays),
however often its changes are merged into the frozen part; snapshots in arrays
round-trip, and damaged ones are refused."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engram_worker.core import graph_store
from engram_worker.core.graph import AssociationGraph, GraphArrays, GraphInvalid
from engram_worker.core.graph_arrays import MAX_CODES

Edge = tuple[float, str, bool]


class Reference:
    """Adjacency dicts ``key → {neighbour: (weight, kind, explicit)}`` and the
    derived edges explicit ones cover: the semantics the graph keeps."""

    def __init__(self) -> None:
        self.adj: dict[int, dict[int, Edge]] = {}
        self.shadow: dict[tuple[int, int], tuple[float, str]] = {}

    def _set(self, a: int, b: int, edge: Edge) -> None:
        self.adj.setdefault(a, {})[b] = edge
        self.adj.setdefault(b, {})[a] = edge

    def link(self, a: int, b: int, weight: float, kind: str, explicit: bool) -> bool:
        if a == b:
            return False
        pair = (min(a, b), max(a, b))
        old = self.adj.get(a, {}).get(b)
        if explicit:
            if old is not None and not old[2]:
                self.shadow[pair] = (old[0], old[1])
            if old == (weight, kind, True):
                return False
            self._set(a, b, (weight, kind, True))
            return True
        if old is not None and old[2]:
            shadow = self.shadow.get(pair)
            if shadow is None or shadow < (weight, kind):
                self.shadow[pair] = (weight, kind)
            return False
        if old is not None and (old[0], old[1]) >= (weight, kind):
            return False
        self._set(a, b, (weight, kind, False))
        return True

    def unlink(self, a: int, b: int, explicit_only: bool) -> bool:
        old = self.adj.get(a, {}).get(b)
        if old is None or (explicit_only and not old[2]):
            return False
        shadow = self.shadow.pop((min(a, b), max(a, b)), None) if old[2] else None
        if shadow is not None:
            self._set(a, b, (shadow[0], shadow[1], False))
            return True
        for x, y in ((a, b), (b, a)):
            del self.adj[x][y]
            if not self.adj[x]:
                del self.adj[x]
        return True

    def remove_node(self, key: int) -> int:
        nbrs = self.adj.pop(key, {})
        for other in nbrs:
            del self.adj[other][key]
            if not self.adj[other]:
                del self.adj[other]
            self.shadow.pop((min(key, other), max(key, other)), None)
        return len(nbrs)

    def neighbours(self, key: int) -> list[tuple[int, float, str]]:
        return sorted(
            ((k, w, kind) for k, (w, kind, _) in self.adj.get(key, {}).items()),
            key=lambda t: (-t[1], t[0]),
        )

    def edges(self) -> Iterator[tuple[int, int, float, str, bool]]:
        for a in sorted(self.adj):
            for b, (w, kind, explicit) in sorted(self.adj[a].items()):
                if a < b:
                    yield a, b, w, kind, explicit
                    shadow = self.shadow.get((a, b)) if explicit else None
                    if shadow is not None:
                        yield a, b, shadow[0], shadow[1], False


def agree(graph: AssociationGraph, ref: Reference, keys: range) -> None:
    """Every way of reading the graph gives what the reference holds."""
    assert list(graph.edges()) == list(ref.edges())
    assert len(graph) == sum(len(n) for n in ref.adj.values()) // 2
    for key in keys:
        assert graph.neighbours(key) == ref.neighbours(key)
        assert graph.neighbours(key, 2) == ref.neighbours(key)[:2]
        assert graph.degree(key) == len(ref.adj.get(key, ()))
        assert (key in graph) == (key in ref.adj)
        for other in keys:
            assert graph.edge(key, other) == ref.adj.get(key, {}).get(other)


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Links (derived and explicit, weights from a small set so that ties and
    repeats happen), unlinks and forgets over a few keys."""
    keys = st.integers(0, 12)
    weights = st.sampled_from([0.1, 0.25, 0.5, 0.5000001, 0.75, 1.0])
    op = st.one_of(
        st.tuples(
            st.just("link"),
            keys,
            keys,
            weights,
            st.sampled_from(["semantic", "temporal", "related", "causes"]),
            st.booleans(),
        ),
        st.tuples(st.just("unlink"), keys, keys, st.booleans()),
        st.tuples(st.just("remove"), keys),
    )
    return draw(st.lists(op, max_size=80))


def apply(graph: AssociationGraph, ref: Reference, op: tuple[Any, ...]) -> None:
    if op[0] == "link":
        _, a, b, w, kind, explicit = op
        assert graph.link(a, b, w, kind, explicit=explicit) == ref.link(a, b, w, kind, explicit)
    elif op[0] == "unlink":
        _, a, b, explicit_only = op
        assert graph.unlink(a, b, explicit_only=explicit_only) == ref.unlink(a, b, explicit_only)
    else:
        assert graph.remove_node(op[1]) == ref.remove_node(op[1])


@settings(max_examples=300, deadline=None)
@given(ops=operations(), min_changes=st.sampled_from([0, 1, 3, 8, 4096]))
def test_the_graph_reads_like_adjacency_dicts_however_often_it_is_compacted(
    ops: list[tuple[Any, ...]], min_changes: int
) -> None:
    """``min_changes`` 0 merges the changes into the arrays after nearly every
    one; 4096 (the default) never in a graph this small."""
    with mock.patch.object(graph_store, "MIN_CHANGES", min_changes):
        graph, ref = AssociationGraph(), Reference()
        for i, op in enumerate(ops):
            apply(graph, ref, op)
            if i % 7 == 0:
                agree(graph, ref, range(13))
        agree(graph, ref, range(13))
        again = AssociationGraph.from_arrays(graph.to_arrays(), np.arange(13))
        agree(again, ref, range(13))
        assert again == graph
        # a graph loaded from arrays takes changes like any other
        for op in ops[: len(ops) // 2]:
            apply(again, ref, op)
        agree(again, ref, range(13))


def test_a_large_graph_agrees_with_the_reference_through_many_compactions() -> None:
    """A fold-like stream at the default thresholds: every new memory links to
    recent and to random older ones, a few explicit links, a few forgets."""
    rng = random.Random(5)
    graph, ref = AssociationGraph(), Reference()
    n = 3000
    with mock.patch.object(graph_store, "MIN_CHANGES", 512):
        for key in range(1, n):
            for other in {key - 1, key - 2, *(rng.randrange(key) for _ in range(4))} - {key}:
                if other > 0:
                    w = rng.choice([0.5, 0.25, rng.random() * 0.9 + 0.1])
                    kind = rng.choice(["semantic", "temporal"])
                    apply(graph, ref, ("link", key, other, w, kind, False))
            if rng.random() < 0.05:
                apply(graph, ref, ("link", rng.randrange(1, key + 1), key, 0.3, "related", True))
            if rng.random() < 0.02:
                apply(graph, ref, ("remove", rng.randrange(1, key + 1)))
            if rng.random() < 0.02:
                a = rng.randrange(1, key + 1)
                apply(graph, ref, ("unlink", a, rng.randrange(1, key + 1), rng.random() < 0.5))
    assert list(graph.edges()) == list(ref.edges())
    for key in range(n):
        assert graph.neighbours(key) == ref.neighbours(key)
    loaded = AssociationGraph.from_arrays(graph.to_arrays(), np.arange(n))
    assert loaded == graph
    for key in range(n):
        assert loaded.neighbours(key) == ref.neighbours(key)


def sample() -> AssociationGraph:
    g = AssociationGraph()
    g.link(1, 2, 0.4, "semantic")
    g.link(1, 2, 0.9, "causes", explicit=True)  # covers the semantic one
    g.link(2, 5, 0.5, "temporal")
    g.link(5, 3, 0.5, "semantic")
    g.link(3, 1, 0.7, "related", explicit=True)
    return g


def test_to_arrays_lists_every_edge_once_in_edges_order_with_its_types() -> None:
    g = sample()
    arrays = g.to_arrays()
    assert (arrays.a.dtype, arrays.b.dtype, arrays.weight.dtype) == (
        np.int64,
        np.int64,
        np.float64,
    )
    assert (arrays.kind.dtype, arrays.explicit.dtype) == (np.uint8, np.bool_)
    assert isinstance(arrays.kinds, tuple)
    rows = list(
        zip(
            arrays.a.tolist(),
            arrays.b.tolist(),
            arrays.weight.tolist(),
            [arrays.kinds[k] for k in arrays.kind.tolist()],
            arrays.explicit.tolist(),
            strict=True,
        )
    )
    assert (
        rows
        == list(g.edges())
        == [
            (1, 2, 0.9, "causes", True),
            (1, 2, 0.4, "semantic", False),  # the derived edge it covers, right after
            (1, 3, 0.7, "related", True),
            (2, 5, 0.5, "temporal", False),
            (3, 5, 0.5, "semantic", False),
        ]
    )
    loaded = AssociationGraph.from_arrays(arrays, np.array([1, 2, 3, 5, 8]))
    assert loaded == g
    assert loaded.unlink(1, 2)  # the covered edge comes back, as in the original
    assert loaded.edge(2, 1) == (0.4, "semantic", False)
    assert AssociationGraph.from_arrays(AssociationGraph().to_arrays(), np.array([1])) == (
        AssociationGraph()
    )


def test_a_covered_edge_of_a_kind_nothing_else_has_comes_back_after_a_load() -> None:
    g = AssociationGraph()
    g.link(1, 2, 0.4, "rare")
    g.link(1, 2, 0.9, "causes", explicit=True)
    g.link(2, 3, 0.5, "semantic")
    loaded = AssociationGraph.from_arrays(g.to_arrays(), np.array([1, 2, 3]))
    assert loaded.unlink(1, 2)
    loaded.to_arrays()  # merges the change into the arrays
    assert loaded.edge(1, 2) == (0.4, "rare", False)
    assert list(loaded.edges()) == [(1, 2, 0.4, "rare", False), (2, 3, 0.5, "semantic", False)]


def test_from_arrays_takes_edges_in_any_order() -> None:
    arrays = sample().to_arrays()
    order = np.array([4, 1, 3, 0, 2])
    shuffled = GraphArrays(
        arrays.a[order],
        arrays.b[order],
        arrays.weight[order],
        arrays.kind[order],
        arrays.kinds,
        arrays.explicit[order],
    )
    assert AssociationGraph.from_arrays(shuffled, np.array([1, 2, 3, 5])) == sample()


def arrays(**over: Any) -> GraphArrays:
    cols: dict[str, Any] = {
        "a": np.array([1, 1], np.int64),
        "b": np.array([2, 3], np.int64),
        "weight": np.array([0.5, 0.25]),
        "kind": np.array([0, 1], np.uint8),
        "kinds": ("semantic", "temporal"),
        "explicit": np.array([False, False]),
    } | over
    return GraphArrays(**cols)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (arrays(b=np.array([2, 3, 3])), "differ in length"),
        (arrays(b=np.array([2, 9])), "edge 1–9 does not join two live memories"),
        (arrays(a=np.array([2, 1]), b=np.array([1, 3])), "edge 2–1 does not join"),
        (arrays(a=np.array([-1, 1])), "does not join two live memories"),
        (arrays(kind=np.array([0, 2], np.uint8)), "edge 1–3 has no kind"),
        (arrays(kinds=("semantic", "")), "edge 1–3 has no kind"),
        (arrays(kinds=("semantic", 7)), "edge 1–3 has no kind"),
        (arrays(b=np.array([2, 2])), "edge 1–2 appears twice"),
        (arrays(weight=np.array([0.5, 0.0])), "outside"),
        (arrays(weight=np.array([1.5, 0.5])), "outside"),
        (arrays(weight=np.array([np.nan, 0.5])), "outside"),
        (arrays(a=np.array([1.0, 1.0])), "wrong type"),
        (arrays(explicit=np.array([0, 1])), "wrong type"),
        (arrays(weight=np.array(["heavy", "light"])), "wrong type"),
        (GraphArrays(*arrays()[:5], None), "wrong type"),  # type: ignore[call-arg]
    ],
)
def test_from_arrays_refuses_damaged_edges(bad: GraphArrays, match: str) -> None:
    with pytest.raises(GraphInvalid, match=match):
        AssociationGraph.from_arrays(bad, np.array([1, 2, 3], np.int64))


def test_from_arrays_refuses_a_snapshot_that_is_not_one() -> None:
    with pytest.raises(GraphInvalid, match="lack a column"):
        AssociationGraph.from_arrays((np.array([1]),), np.array([1]))  # type: ignore[arg-type]
    keys = np.array([1, 2, 3])
    explicit_twice = arrays(b=np.array([2, 2]), explicit=np.array([True, True]))
    with pytest.raises(GraphInvalid, match="appears twice"):
        AssociationGraph.from_arrays(explicit_twice, keys)
    # the same pair once explicit and once derived is a covered edge, not a repeat
    covered = arrays(b=np.array([2, 2]), explicit=np.array([True, False]))
    assert AssociationGraph.from_arrays(covered, keys).edge(1, 2) == (0.5, "semantic", True)


def test_keys_must_fit_the_arrays() -> None:
    g = AssociationGraph()
    for a, b in ((-1, 2), (1, 2**31)):
        with pytest.raises(ValueError, match="not both in"):
            g.link(a, b, 0.5, "semantic")
    assert g.link(0, 2**31 - 1, 0.5, "semantic")
    assert g.neighbours(-1) == [] and g.neighbours(2**40) == [] and g.edge(-1, 0) is None


def test_a_graph_holds_a_bounded_number_of_link_kinds_at_a_time() -> None:
    g = AssociationGraph()
    for i in range(MAX_CODES):
        g.link(1, i + 2, 0.5, f"k{i}", explicit=True)
    with pytest.raises(ValueError, match=f"at most {MAX_CODES} kinds"):
        g.link(1, 999, 0.5, "one-too-many", explicit=True)
    assert g.edge(1, 999) is None and len(g) == MAX_CODES  # nothing changed
    g.unlink(1, 2)  # k0 is not used any more: its place is free again
    assert g.link(1, 999, 0.5, "one-too-many", explicit=True)
    assert g.edge(999, 1) == (0.5, "one-too-many", True)
    assert g.to_arrays().kinds == tuple(
        sorted({f"k{i}" for i in range(1, MAX_CODES)} | {"one-too-many"})
    )
