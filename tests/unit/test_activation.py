"""The association graph, spreading activation and the forgetting curve (pure)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engram_worker.core.activation import (
    DecayParams,
    SpreadParams,
    path,
    retention,
    spread,
)
from engram_worker.core.graph import AssociationGraph, GraphInvalid

PROPERTY = settings(max_examples=200, deadline=None)

keys = st.integers(min_value=1, max_value=30)
weights = st.floats(min_value=0.01, max_value=1.0)
edge_lists = st.lists(
    st.tuples(keys, keys, weights, st.sampled_from(["semantic", "temporal", "x"]), st.booleans())
)


def build(edges: list[tuple[int, int, float, str, bool]]) -> AssociationGraph:
    """Derived links in any order; explicit ones in the order given (the last
    explicit link of a pair wins, as in the WAL)."""
    g = AssociationGraph()
    for a, b, w, kind, explicit in edges:
        g.link(a, b, w, kind, explicit=explicit)
    return g


def reordered(edges: list[Any], seed: int) -> list[Any]:
    """Another arrival order that keeps the explicit links' own order."""
    derived = [e for e in edges if not e[4]]
    random.Random(seed).shuffle(derived)
    explicit = iter([e for e in edges if e[4]])
    slots = [e[4] for e in edges]
    random.Random(seed + 1).shuffle(slots)
    pool = iter(derived)
    return [next(explicit) if is_explicit else next(pool) for is_explicit in slots]


def hop_distance(g: AssociationGraph, seeds: set[int]) -> dict[int, int]:
    dist = dict.fromkeys(seeds, 0)
    frontier = list(seeds)
    while frontier:
        nxt = []
        for u in frontier:
            for v, _, _ in g.neighbours(u):
                if v not in dist:
                    dist[v] = dist[u] + 1
                    nxt.append(v)
        frontier = nxt
    return dist


# -- graph --------------------------------------------------------------------------


@PROPERTY
@given(edges=edge_lists, drop=st.lists(keys, max_size=5), seed=st.integers(0, 100))
def test_the_graph_stays_symmetric_and_round_trips(edges: Any, drop: list[int], seed: int) -> None:
    g = build(edges)
    for key in drop:
        g.remove_node(key)
    for a, b, w, kind, explicit in g.edges():
        assert a < b and a not in drop and b not in drop
        if explicit or g.edge(a, b) == (w, kind, False):
            assert g.edge(b, a) == g.edge(a, b)
    assert len(g) == len({(a, b) for a, b, *_ in g.edges()})
    for key in drop:
        assert key not in g and g.neighbours(key) == []
    live = {k for e in g.edges() for k in e[:2]}
    assert AssociationGraph.from_columns(g.to_columns(), live) == g
    # the order derived links arrive in, relative to each other and to the
    # explicit ones, does not matter
    again = build(reordered(edges, seed))
    for key in drop:
        again.remove_node(key)
    assert again == g


def test_derived_links_keep_the_stronger_explicit_links_set_the_weight() -> None:
    g = AssociationGraph()
    assert g.link(1, 2, 0.4, "semantic")
    assert not g.link(2, 1, 0.3, "temporal")
    assert g.edge(1, 2) == (0.4, "semantic", False)
    assert g.link(1, 2, 0.9, "temporal")
    assert g.edge(2, 1) == (0.9, "temporal", False)
    assert g.link(1, 2, 0.2, "related", explicit=True)  # a client weakens it
    assert g.edge(1, 2) == (0.2, "related", True)
    assert not g.link(1, 2, 0.95, "semantic")  # derived later: kept aside only
    assert g.edge(1, 2) == (0.2, "related", True)
    assert g.unlink(1, 2)  # the explicit link goes: the strongest derived one is back
    assert g.edge(1, 2) == (0.95, "semantic", False)
    assert g.unlink(1, 2) and g.edge(1, 2) is None and not g.unlink(1, 2)
    assert not g.link(3, 3, 0.5, "x")  # no self-links
    with pytest.raises(ValueError, match="outside"):
        g.link(1, 4, 0.0, "x")
    with pytest.raises(ValueError, match="outside"):
        g.link(1, 4, 1.5, "x")


def test_neighbours_come_strongest_first_ties_by_key() -> None:
    g = build(
        [
            (5, 9, 0.5, "a", False),
            (5, 2, 0.5, "a", False),
            (5, 7, 0.9, "b", True),
            (5, 1, 0.1, "c", False),
        ]
    )
    assert [k for k, _, _ in g.neighbours(5)] == [7, 2, 9, 1]
    g.unlink(5, 7)
    assert [k for k, _, _ in g.neighbours(5)] == [2, 9, 1]


def edge_cols(**over: list[Any]) -> dict[str, list[Any]]:
    return {"a": [1], "b": [2], "weight": [0.5], "kind": ["x"], "explicit": [False]} | over


@pytest.mark.parametrize(
    ("cols", "match"),
    [
        ({"a": [1], "b": [2], "weight": [0.5], "kind": ["x"]}, "lack a column"),
        (edge_cols(b=[2, 3]), "differ in length"),
        (edge_cols(b=[9]), "two live memories"),
        (edge_cols(a=[2], b=[1]), "two live memories"),
        (
            edge_cols(
                a=[1, 1], b=[2, 2], weight=[0.5, 0.5], kind=["x", "x"], explicit=[True, True]
            ),
            "twice",
        ),
        (edge_cols(weight=[2.0]), "unreadable edge"),
        (edge_cols(weight=["heavy"]), "unreadable edge"),
        (edge_cols(kind=[""]), "two live memories"),
        (edge_cols(explicit=["yes"]), "two live memories"),
    ],
)
def test_edges_from_a_damaged_snapshot_are_refused(cols: dict[str, Any], match: str) -> None:
    with pytest.raises(GraphInvalid, match=match):
        AssociationGraph.from_columns(cols, {1, 2, 3})


# -- spreading ----------------------------------------------------------------------

params_st = st.builds(
    SpreadParams,
    max_hops=st.integers(0, 4),
    hop_decay=st.floats(0.05, 1.0),
    threshold=st.floats(0.0, 0.5),
    max_fanout=st.integers(1, 8),
)


@PROPERTY
@given(
    edges=edge_lists,
    seeds=st.dictionaries(keys, st.floats(-0.5, 1.5), min_size=1, max_size=5),
    params=params_st,
)
def test_activation_stays_in_the_graph_in_bounds_and_within_reach(
    edges: Any, seeds: dict[int, float], params: SpreadParams
) -> None:
    g = build(edges)
    reached = spread(seeds, g.neighbours, params)
    dist = hop_distance(g, set(seeds))
    for key, r in reached.items():
        assert 0.0 <= r.activation <= 1.0
        assert key in dist  # only memories connected to a seed
        assert r.hops <= params.max_hops and dist[key] <= r.hops
        own = min(max(seeds.get(key, 0.0), 0.0), 1.0)
        if key in seeds and (own >= params.threshold or r.hops == 0):
            # a seed; one too weak to spread is reported by a path that reaches it
            assert r.hops == 0 and r.activation >= own
        else:
            assert r.activation >= own
            assert r.hops >= 1 and r.activation >= params.threshold
            trail = path(reached, key)
            assert trail[0] in seeds and reached[trail[0]].hops == 0 and trail[-1] == key
            assert len(trail) - 1 <= r.hops
            for u, v in itertools.pairwise(trail):
                assert g.edge(u, v) is not None
    # the same graph built in another order spreads identically
    assert spread(seeds, build(reordered(edges, 3)).neighbours, params) == reached


def test_a_chain_decays_per_hop_and_stops_at_max_hops() -> None:
    g = build([(1, 2, 1.0, "x", False), (2, 3, 1.0, "x", False), (3, 4, 1.0, "x", False)])
    reached = spread({1: 1.0}, g.neighbours, SpreadParams(max_hops=2, hop_decay=0.5))
    assert {k: (r.activation, r.hops) for k, r in reached.items()} == {
        1: (1.0, 0),
        2: (0.5, 1),
        3: (0.25, 2),
    }
    assert path(reached, 3) == [1, 2, 3]
    assert spread({1: 1.0}, g.neighbours, SpreadParams(max_hops=0)).keys() == {1}


def test_two_paths_combine_by_probabilistic_or() -> None:
    g = build([(1, 3, 0.8, "x", False), (2, 3, 0.8, "x", True)])
    reached = spread({1: 1.0, 2: 1.0}, g.neighbours, SpreadParams(max_hops=1, hop_decay=0.5))
    assert reached[3].activation == pytest.approx(1 - (1 - 0.4) * (1 - 0.4))
    assert reached[3].parent == 1  # equal contributions: the lower key


def test_weak_contributions_and_fanout_are_cut() -> None:
    g = build([(1, 2, 0.9, "x", False), (1, 3, 0.5, "x", False), (1, 4, 0.05, "x", False)])
    reached = spread({1: 1.0}, g.neighbours, SpreadParams(max_hops=1, hop_decay=1.0, threshold=0.1))
    assert reached.keys() == {1, 2, 3}  # 4 gets 0.05 < threshold
    capped = spread({1: 1.0}, g.neighbours, SpreadParams(max_hops=1, hop_decay=1.0, max_fanout=1))
    assert capped.keys() == {1, 2}


def test_activation_does_not_echo_back_to_its_source() -> None:
    g = build([(1, 2, 1.0, "x", False)])
    reached = spread({1: 0.5}, g.neighbours, SpreadParams(max_hops=4, hop_decay=1.0))
    assert reached[1].activation == 0.5 and reached[2].activation == 0.5


# -- decay ---------------------------------------------------------------------------


@PROPERTY
@given(
    age=st.floats(-1e9, 1e10),
    later=st.floats(0, 1e9),
    recalls=st.integers(-3, 50),
    more=st.integers(0, 10),
)
def test_retention_is_bounded_fades_with_age_and_slows_with_recalls(
    age: float, later: float, recalls: int, more: int
) -> None:
    p = DecayParams()
    r = retention(age, recalls, p)
    assert 0.0 <= r <= 1.0
    assert retention(age + later, recalls, p) <= r + 1e-12
    assert retention(age, recalls + more, p) >= r - 1e-12
    assert retention(min(age, 0.0), recalls, p) == 1.0


def test_the_two_half_lives() -> None:
    p = DecayParams(fast_half_life_s=10, slow_half_life_s=100, settle_after=2)
    assert retention(10, 0, p) == pytest.approx(0.5)
    assert retention(100, 2, p) == pytest.approx(0.5)
    assert retention(100, 50, p) == pytest.approx(0.5)
    assert retention(10, 1, p) == pytest.approx(0.5 * 0.5 + 0.5 * 2 ** (-0.1))
    with pytest.raises(ValueError, match="half-lives"):
        DecayParams(fast_half_life_s=100, slow_half_life_s=10)
