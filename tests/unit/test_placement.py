"""Rendezvous placement: every process agrees, load is spread, and a membership
change moves only the spaces it must."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engram_contract.placement import hosts, primary, ranked

SPACES = [f"space-{i:04d}" for i in range(3000)]
WORKERS = ["w1", "w2", "w3"]


def _placement(workers: list[str], replicas: int) -> dict[str, list[str]]:
    return {s: hosts(s, workers, replicas) for s in SPACES}


def test_same_answer_whatever_the_order_workers_are_listed_in() -> None:
    for space in SPACES[:200]:
        assert hosts(space, ["w1", "w2", "w3"], 2) == hosts(space, ["w3", "w1", "w2"], 2)


def test_known_answer_is_stable_across_processes_and_versions() -> None:
    # pinned: a change of hash would move every space of a running cluster
    assert ranked("alpha", ["w1", "w2", "w3"]) == ranked("alpha", ["w3", "w2", "w1"])
    assert [primary(s, WORKERS) for s in ("alpha", "beta", "gamma", "delta")] == [
        "w2",
        "w1",
        "w3",
        "w2",
    ]
    assert ranked("alpha", [*WORKERS, "w4"]) == ["w2", "w1", "w3", "w4"]


def test_spaces_spread_evenly_and_replicas_are_distinct() -> None:
    for replicas in (1, 2):
        placed = _placement(WORKERS, replicas)
        for chosen in placed.values():
            assert len(chosen) == replicas == len(set(chosen))
        load = {w: sum(w in c for c in placed.values()) for w in WORKERS}
        expected = len(SPACES) * replicas / len(WORKERS)
        assert all(abs(n - expected) < 0.1 * expected for n in load.values()), load


def test_a_joining_worker_takes_about_its_share_and_nothing_else_moves() -> None:
    before = _placement(WORKERS, 1)
    after = _placement([*WORKERS, "w4"], 1)
    moved = [s for s in SPACES if before[s] != after[s]]
    assert all(after[s] == ["w4"] for s in moved)  # only to the newcomer
    assert abs(len(moved) - len(SPACES) / 4) < 0.1 * len(SPACES) / 4


def test_a_leaving_worker_moves_only_its_own_spaces() -> None:
    before = _placement(WORKERS, 2)
    after = _placement(["w1", "w3"], 2)
    for space in SPACES:
        if "w2" not in before[space]:
            assert after[space] == before[space]
        else:  # the survivor keeps its place in the order; the other one moves up
            assert set(before[space]) - {"w2"} <= set(after[space])


def test_more_replicas_than_workers_hosts_everywhere() -> None:
    assert sorted(hosts("alpha", ["w1", "w2"], 3)) == ["w1", "w2"]
    assert hosts("alpha", [], 2) == [] and primary("alpha", []) is None


def test_replicas_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        hosts("alpha", WORKERS, 0)


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8, unique=True))
def test_primary_is_the_first_host(workers: list[str]) -> None:
    assert hosts("some-space", workers, 1) == [primary("some-space", workers)]
