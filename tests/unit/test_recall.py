"""Cognitive recall in the fold's state: modes, filters, traces, the forgetting
curve with reinforcement, and consolidation (pure: no NATS)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from engram_contract.embedders import HashNgramEmbedder
from engram_contract.messages import (
    ConsolidationSettings,
    DecaySettings,
    LinkSettings,
    RecallRequest,
    SpaceRecord,
)
from engram_worker.core.consolidation import consolidated_id, consolidation_groups
from engram_worker.core.events import Activated, Consolidated, Rejected
from engram_worker.core.index import VectorIndex
from engram_worker.core.persistence import capture, restore
from engram_worker.core.recall import RecallQuery
from engram_worker.core.state import SpaceState
from tests.helpers import EPOCH, SPACE, basis_array, broker_time, json_bytes, remember_body

DIM = 16
DAY = 86_400.0
# no temporal links and only strong semantic ones: the graph holds what a test makes
QUIET = LinkSettings(temporal_window_s=0.0, semantic_threshold=0.95)


def state_of(
    links: LinkSettings = QUIET,
    decay: DecaySettings | None = None,
    consolidation: ConsolidationSettings | None = None,
) -> SpaceState:
    record = SpaceRecord(
        id=SPACE,
        dim=DIM,
        embedder=HashNgramEmbedder.name,
        created_at=EPOCH,
        links=links,
        decay=decay or DecaySettings(),
        consolidation=consolidation or ConsolidationSettings(),
    )
    return SpaceState(record, HashNgramEmbedder(DIM))


class Wal:
    """Feeds a state the messages a WAL would hand it, one second apart."""

    def __init__(self, state: SpaceState) -> None:
        self.state = state
        self.seq = 0

    def put(self, verb: str, data: bytes) -> Any:
        self.seq += 1
        return self.state.apply_message(verb, data, self.seq, broker_time(self.seq))

    def remember(self, memory_id: str, vector: np.ndarray, **fields: Any) -> None:
        self.put(
            "remember", remember_body(memory_id, memory_id=memory_id, embedding=vector, **fields)
        )

    def link(self, source: str, target: str, weight: float, kind: str = "related") -> Any:
        doc = {
            "schema_version": 1,
            "command_id": f"l-{source}-{target}-{self.seq}",
            "source": source,
            "target": target,
            "weight": weight,
            "kind": kind,
        }
        return self.put("link", json_bytes(doc))

    def reinforce(self, *memory_ids: str) -> Any:
        doc = {"schema_version": 1, "command_id": f"r-{self.seq}", "memory_ids": list(memory_ids)}
        return self.put("reinforce", json_bytes(doc))

    def consolidate(self, memory_id: str, members: list[str]) -> Any:
        doc = {
            "schema_version": 1,
            "command_id": f"c-{memory_id}",
            "memory_id": memory_id,
            "members": members,
        }
        return self.put("consolidate", json_bytes(doc))


def mixed(i: int, j: int, a: float) -> np.ndarray:
    vec = np.cos(a) * basis_array(DIM, i) + np.sin(a) * basis_array(DIM, j)
    return vec.astype(np.float32)


def query(mode: str = "spreading", **kw: Any) -> RecallQuery:
    return RecallQuery.of(RecallRequest(embedding=[0.0] * DIM, mode=mode, **kw))  # type: ignore[arg-type]


def ids(results: list[Any]) -> list[str]:
    return [r.memory.id for r in results]


@pytest.fixture
def chain() -> Wal:
    """cue ≈ a; a —0.9— b —0.8— c; b and c are orthogonal to the cue; d is a
    little similar to the cue and linked to nothing."""
    wal = Wal(state_of())
    wal.remember("a", basis_array(DIM, 0))
    wal.remember("b", basis_array(DIM, 1))
    wal.remember("c", basis_array(DIM, 2))
    wal.remember("d", mixed(0, 3, 1.3))  # similarity cos(1.3) ≈ 0.27
    wal.link("a", "b", 0.9)
    wal.link("b", "c", 0.8, kind="causes")
    return wal


def test_similarity_mode_finds_only_what_resembles_the_cue(chain: Wal) -> None:
    results = chain.state.recall(basis_array(DIM, 0), 3, query("similarity", k=3))
    assert ids(results)[:2] == ["a", "d"]
    assert all(r.hops == 0 for r in results)
    assert results[0].activation == pytest.approx(1.0, abs=1e-5)


def test_spreading_reaches_linked_memories_that_do_not_resemble_the_cue(chain: Wal) -> None:
    results = chain.state.recall(basis_array(DIM, 0), 4, query(k=4))
    by_id = {r.memory.id: r for r in results}
    assert ids(results)[0] == "a"
    assert by_id["b"].hops == 1
    assert by_id["b"].activation == pytest.approx(1.0 * 0.9 * 0.5, abs=1e-4)
    assert by_id["c"].hops == 2
    assert by_id["c"].activation == pytest.approx(0.9 * 0.5 * 0.8 * 0.5, abs=1e-4)
    assert by_id["b"].similarity == pytest.approx(0.0, abs=1e-5)  # its own, not the seed's
    # b (via a strong link) outranks d (a little similar, unlinked)
    assert ids(results).index("b") < ids(results).index("d")


def test_max_hops_bounds_the_spread(chain: Wal) -> None:
    def hops(max_hops: int) -> dict[str, tuple[int, float]]:
        results = chain.state.recall(basis_array(DIM, 0), 10, query(k=10, max_hops=max_hops))
        return {r.memory.id: (r.hops, r.activation) for r in results}

    assert hops(1)["b"] == (1, pytest.approx(0.45, abs=1e-4))
    assert hops(1)["c"] == (0, 0.0)  # a candidate (k=10 > memories) but not activated
    assert hops(0)["b"] == (0, 0.0)


def test_threshold_stops_weak_activation(chain: Wal) -> None:
    # c would get 0.18 (0.9·0.5·0.8·0.5): a threshold above that stops it
    found = {
        r.memory.id: r
        for r in chain.state.recall(basis_array(DIM, 0), 10, query(k=10, threshold=0.2))
    }
    assert found["b"].hops == 1
    assert found["c"].activation == 0.0


def test_trace_names_the_path_with_its_links(chain: Wal) -> None:
    [*_, c] = [
        r for r in chain.state.recall(basis_array(DIM, 0), 4, query(k=4, trace=True)) if r.hops == 2
    ]
    assert c.trace is not None
    assert [s.memory_id for s in c.trace] == ["a", "b", "c"]
    assert [s.hops for s in c.trace] == [0, 1, 2]
    assert (c.trace[0].weight, c.trace[0].kind) == (None, None)
    assert (c.trace[1].weight, c.trace[1].kind) == (pytest.approx(0.9), "related")
    assert (c.trace[2].weight, c.trace[2].kind) == (pytest.approx(0.8), "causes")
    assert c.trace[-1].activation == pytest.approx(c.activation)


def test_no_trace_unless_asked(chain: Wal) -> None:
    assert all(r.trace is None for r in chain.state.recall(basis_array(DIM, 0), 4, query(k=4)))


def test_hybrid_blends_similarity_and_spreading(chain: Wal) -> None:
    results = chain.state.recall(basis_array(DIM, 0), 4, query("hybrid", k=4, hybrid_weight=0.5))
    by_id = {r.memory.id: r for r in results}
    assert by_id["a"].activation == pytest.approx(1.0, abs=1e-4)  # similar and a seed
    assert by_id["b"].activation == pytest.approx(0.5 * 0.45, abs=1e-4)  # links only
    assert by_id["d"].activation == pytest.approx(0.5 * np.cos(1.3) + 0.5 * np.cos(1.3), abs=1e-3)
    only_similarity = chain.state.recall(
        basis_array(DIM, 0), 4, query("hybrid", k=4, hybrid_weight=0)
    )
    assert ids(only_similarity)[:2] == ["a", "d"]


def test_forget_takes_the_path_away(chain: Wal) -> None:
    doc = {"schema_version": 1, "command_id": "f", "memory_id": "b"}
    chain.put("forget", json_bytes(doc))
    found = {r.memory.id: r for r in chain.state.recall(basis_array(DIM, 0), 10, query(k=10))}
    assert "b" not in found
    assert found["c"].hops == 0 and found["c"].activation == 0.0  # nothing leads there now


# -- filters -----------------------------------------------------------------


def test_tag_filter_returns_k_matches_even_far_from_the_cue() -> None:
    wal = Wal(state_of())
    for i in range(50):
        wal.remember(f"near{i}", mixed(0, 1 + i % 10, 0.1 + i * 0.001))
    for i in range(5):  # the only tagged ones, far from the cue
        wal.remember(f"far{i}", mixed(5, 6, 0.2 * i), tags=["x", "y"] if i < 3 else ["x"])
    for mode in ("similarity", "spreading", "hybrid"):
        got = ids(wal.state.recall(basis_array(DIM, 0), 3, query(mode, k=3, tags=["x"])))
        assert len(got) == 3 and all(g.startswith("far") for g in got), mode
        both = ids(wal.state.recall(basis_array(DIM, 0), 10, query(mode, k=10, tags=["x", "y"])))
        assert sorted(both) == ["far0", "far1", "far2"], mode
    assert wal.state.recall(basis_array(DIM, 0), 3, query(k=3, tags=["nope"])) == []


def test_tag_filter_beyond_the_exact_search_size_widens_the_search() -> None:
    wal = Wal(state_of(LinkSettings(temporal_window_s=0.0, semantic_k=0)))
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((6000, DIM)).astype(np.float32)
    for i, vec in enumerate(vectors):
        wal.remember(f"m{i}", vec, tags=["common"] if i % 2 == 0 else [])
    cue = basis_array(DIM, 0)
    got = wal.state.recall(cue, 20, query("similarity", k=20, tags=["common"]))
    assert len(got) == 20 and all(int(r.memory.id[1:]) % 2 == 0 for r in got)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    best = sorted((i for i in range(0, 6000, 2)), key=lambda i: -unit[i][0])[:20]
    assert len(set(ids(got)) & {f"m{i}" for i in best}) >= 18  # HNSW is approximate


def test_since_until_filter_on_occurred_at() -> None:
    wal = Wal(state_of())
    for day in range(10):
        when = (EPOCH + timedelta(days=day)).isoformat()
        wal.remember(f"d{day}", mixed(0, 1, 0.05 * day), occurred_at=when)
    since, until = EPOCH + timedelta(days=3), EPOCH + timedelta(days=6)
    for mode in ("similarity", "spreading", "hybrid"):
        got = wal.state.recall(basis_array(DIM, 0), 10, query(mode, k=10, since=since, until=until))
        assert sorted(ids(got)) == ["d3", "d4", "d5"], mode  # since inclusive, until not
    only_since = wal.state.recall(basis_array(DIM, 0), 10, query(k=10, since=since))
    assert sorted(ids(only_since)) == [f"d{d}" for d in range(3, 10)]
    tagged_window = wal.state.recall(
        basis_array(DIM, 0), 10, query(k=10, until=until, tags=["none"])
    )
    assert tagged_window == []


def test_filters_survive_forget_and_replace() -> None:
    wal = Wal(state_of())
    wal.remember("m", basis_array(DIM, 0), tags=["t"])
    wal.remember("m", basis_array(DIM, 0), tags=["u"])  # replaced: no longer tagged t
    assert wal.state.recall(basis_array(DIM, 0), 5, query(k=5, tags=["t"])) == []
    assert ids(wal.state.recall(basis_array(DIM, 0), 5, query(k=5, tags=["u"]))) == ["m"]
    wal.put("forget", json_bytes({"schema_version": 1, "command_id": "f", "memory_id": "m"}))
    assert wal.state.recall(basis_array(DIM, 0), 5, query(k=5, tags=["u"])) == []


# -- decay and reinforcement ---------------------------------------------------


def test_scores_decay_with_time_since_storing() -> None:
    wal = Wal(state_of(decay=DecaySettings(fast_half_life_s=DAY, slow_half_life_s=30 * DAY)))
    wal.remember("m", basis_array(DIM, 0), confidence=0.8)
    stored = broker_time(1).timestamp()
    fresh = wal.state.recall(basis_array(DIM, 0), 1, query("similarity", k=1), now=stored)[0]
    day = wal.state.recall(basis_array(DIM, 0), 1, query("similarity", k=1), now=stored + DAY)[0]
    assert fresh.confidence == pytest.approx(0.8)
    assert day.retention == pytest.approx(0.5, abs=1e-6)
    assert day.confidence == pytest.approx(0.4, abs=1e-6)
    assert day.score == pytest.approx(0.4, abs=1e-5)
    assert day.memory.confidence == 0.8  # what was stored is kept


def test_reinforcement_counts_and_slows_decay() -> None:
    wal = Wal(state_of(decay=DecaySettings(fast_half_life_s=DAY, slow_half_life_s=30 * DAY)))
    wal.remember("m", basis_array(DIM, 0))
    wal.remember("n", basis_array(DIM, 1))
    event = wal.reinforce("m", "gone")
    assert isinstance(event, Activated) and event.memory_ids == ["m"]
    for _ in range(2):
        wal.reinforce("m")
    rec = wal.state.get("m")
    assert rec is not None and rec.recalls == 3 and rec.last_recall == broker_time(wal.seq)
    later = broker_time(wal.seq).timestamp() + 10 * DAY
    m = wal.state.recall(basis_array(DIM, 0), 1, query("similarity", k=1), now=later)[0]
    n = wal.state.recall(basis_array(DIM, 1), 1, query("similarity", k=1), now=later)[0]
    assert m.retention == pytest.approx(2 ** (-10 / 30), rel=1e-6)  # settled: slow curve
    assert n.retention < 0.01  # never recalled: the fast curve
    assert m.memory.recalls == 3 and m.memory.last_recall == broker_time(wal.seq)


def test_reinforce_of_unknown_ids_only_is_not_an_error() -> None:
    wal = Wal(state_of())
    event = wal.reinforce("never")
    assert isinstance(event, Activated) and event.memory_ids == []


# -- consolidation ---------------------------------------------------------------


def cluster(wal: Wal, prefix: str, axis: int, n: int) -> list[str]:
    out = []
    for i in range(n):
        wal.remember(f"{prefix}{i}", mixed(axis, axis + 1, 0.05 * i), tags=["topic", f"n{i}"])
        out.append(f"{prefix}{i}")
    return out


def test_consolidation_groups_dense_clusters_only() -> None:
    wal = Wal(state_of(LinkSettings(temporal_window_s=0.0, semantic_threshold=0.5)))
    first = cluster(wal, "a", 0, 4)
    second = cluster(wal, "b", 4, 3)
    wal.remember("lone", basis_array(DIM, 10))
    groups = consolidation_groups(wal.state, ConsolidationSettings())
    assert [members for _, members in groups] == [sorted(first), sorted(second)]
    assert [mid for mid, _ in groups] == [consolidated_id(SPACE, m) for _, m in groups]
    assert consolidation_groups(wal.state, ConsolidationSettings(min_size=5)) == []


def test_consolidate_makes_a_semantic_memory_linked_to_its_members() -> None:
    wal = Wal(state_of(LinkSettings(temporal_window_s=0.0, semantic_threshold=0.5)))
    members = cluster(wal, "a", 0, 4)
    [(memory_id, planned)] = consolidation_groups(wal.state, ConsolidationSettings())
    event = wal.consolidate(memory_id, planned)
    assert isinstance(event, Consolidated) and event.members == members
    rec = wal.state.get(memory_id)
    assert rec is not None and rec.kind == "semantic"
    assert rec.content.startswith("Consolidated from 4 memories: a0 | a1 | a2 | a3")
    assert rec.tags == ["topic"]  # tags shared by at least half the members
    graph = wal.state.graph
    for mid in members:
        member = wal.state.get(mid)
        assert member is not None
        edge = graph.edge(rec.key, member.key)
        assert edge is not None and edge[0] == 1.0 and edge[1] == "consolidated"
    # the centroid lies amid its members
    [top] = wal.state.recall(mixed(0, 1, 0.075), 1, query("similarity", k=1))
    assert top.memory.id == memory_id and top.memory.kind == "semantic"
    # consolidated members are not planned again
    assert consolidation_groups(wal.state, ConsolidationSettings()) == []


def test_consolidate_skips_forgotten_members_and_needs_two() -> None:
    wal = Wal(state_of())
    wal.remember("x", basis_array(DIM, 0))
    wal.remember("y", basis_array(DIM, 1))
    wal.remember("z", basis_array(DIM, 2))
    wal.put("forget", json_bytes({"schema_version": 1, "command_id": "f", "memory_id": "z"}))
    event = wal.consolidate("sem-1", ["x", "y", "z"])
    assert isinstance(event, Consolidated) and event.members == ["x", "y"]
    assert "z" not in (wal.state.get("sem-1").content if wal.state.get("sem-1") else "")  # type: ignore[union-attr]
    rejected = wal.consolidate("sem-2", ["x", "gone"])
    assert isinstance(rejected, Rejected) and "1 of the 2 members exist" in rejected.reason
    assert wal.state.get("sem-2") is None


def test_consolidate_command_is_validated() -> None:
    wal = Wal(state_of())
    wal.remember("x", basis_array(DIM, 0))
    doc = {"schema_version": 1, "command_id": "c", "memory_id": "x", "members": ["x", "y"]}
    event = wal.put("consolidate", json.dumps(doc).encode())
    assert isinstance(event, Rejected) and "own members" in event.reason


def test_semantic_memory_and_access_counts_survive_a_snapshot() -> None:
    wal = Wal(state_of(LinkSettings(temporal_window_s=0.0, semantic_threshold=0.5)))
    cluster(wal, "a", 0, 3)
    [(memory_id, members)] = consolidation_groups(wal.state, ConsolidationSettings())
    wal.consolidate(memory_id, members)
    wal.reinforce("a0", memory_id)
    state = wal.state
    state.flush()
    restored = state_of(LinkSettings(temporal_window_s=0.0, semantic_threshold=0.5))
    restore(
        restored,
        capture(state),
        VectorIndex.from_bytes(state.index.to_bytes(), DIM, "cos"),
        applied_seq=state.applied_seq,
        next_key=state.next_key,
        rejected=state.rejected,
    )
    for mid in [*members, memory_id]:
        a, b = state.get(mid), restored.get(mid)
        assert a is not None and b is not None
        assert state.to_memory(a) == restored.to_memory(b)
    assert restored.graph == state.graph
    cue, q, now = mixed(0, 1, 0.05), query(k=5, trace=True), broker_time(wal.seq).timestamp() + DAY
    assert restored.recall(cue, 5, q, now) == state.recall(cue, 5, q, now)
    assert restored.recall(cue, 5, query(k=5, tags=["topic"]), now) == state.recall(
        cue, 5, query(k=5, tags=["topic"]), now
    )


def test_time_index_built_by_a_query_follows_later_writes() -> None:
    def occurred(day: int) -> str:
        return (EPOCH + timedelta(days=day)).isoformat()

    def window(state: SpaceState) -> list[str]:
        q = query(k=10, since=EPOCH + timedelta(days=2), until=EPOCH + timedelta(days=5))
        return sorted(ids(state.recall(basis_array(DIM, 0), 10, q)))

    wal = Wal(state_of())
    for day in (1, 3, 6):
        wal.remember(f"d{day}", mixed(0, 1, 0.1 * day), occurred_at=occurred(day))
    assert window(wal.state) == ["d3"]  # builds the index
    wal.remember("d4", mixed(0, 2, 0.1), occurred_at=occurred(4))  # out of time order
    wal.remember("d2", mixed(0, 3, 0.1))  # occurred_at = stored (2025-01-01, day 0)
    wal.remember("d3", mixed(0, 1, 0.2), occurred_at=occurred(7))  # moved out
    wal.put("forget", json_bytes({"schema_version": 1, "command_id": "f", "memory_id": "d6"}))
    wal.remember("late", mixed(0, 4, 0.1), occurred_at=occurred(2))
    assert window(wal.state) == ["d4", "late"]
