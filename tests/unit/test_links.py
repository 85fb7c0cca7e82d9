"""The association graph inside the fold: semantic links when memories are
indexed, temporal links between memories stored close in time, explicit links
from ``link`` commands, and forgetting that takes a memory's links with it."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engram_worker.core import links as links_module
from engram_worker.core.events import Linked, Rejected
from engram_worker.core.state import SpaceState
from tests.helpers import EPOCH, basis_array, broker_time, empty_state, json_bytes, remember_body

DIM = 8


def link(source: str, target: str, weight: float, kind: str | None = None) -> bytes:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "command_id": f"l-{source}-{target}",
        "source": source,
        "target": target,
        "weight": weight,
    }
    if kind is not None:
        doc["kind"] = kind
    return json_bytes(doc)


def forget(memory_id: str) -> bytes:
    return json_bytes({"schema_version": 1, "command_id": f"f-{memory_id}", "memory_id": memory_id})


def edges(state: SpaceState) -> dict[tuple[str, str], tuple[float, str, bool]]:
    """Every edge by the ids it joins (sorted), as (weight, kind, explicit)."""
    by_key = {r.key: r.id for r in state.records.by_id.values()}
    out = {}
    for a, b, w, kind, explicit in state.graph.edges():
        pair = tuple(sorted((by_key[a], by_key[b])))
        if (w, kind, explicit) == state.graph.edge(a, b):  # the effective edge
            out[pair] = (round(w, 4), kind, explicit)
    return out  # type: ignore[return-value]


def tilted(i: int, angle: float) -> np.ndarray:
    """A unit vector at ``angle`` radians from axis ``i`` towards the next axis."""
    v = np.zeros(DIM, dtype=np.float32)
    v[i], v[(i + 1) % DIM] = math.cos(angle), math.sin(angle)
    return v


def test_a_new_memory_links_to_its_nearest_neighbours_above_the_threshold() -> None:
    state = empty_state(DIM, semantic_k=2, semantic_threshold=0.5, temporal_max=0)
    state.apply_message(
        "remember",
        remember_body("a", memory_id="a", embedding=basis_array(DIM, 0)),
        1,
        broker_time(1),
    )
    state.apply_message(
        "remember",
        remember_body("far", memory_id="far", embedding=basis_array(DIM, 4)),
        2,
        broker_time(2),
    )
    state.flush()  # a separate batch: b finds a through the index
    for seq, (mid, angle) in enumerate([("b", 0.3), ("c", 0.6), ("d", 1.2)], start=3):
        state.apply_message(
            "remember",
            remember_body(mid, memory_id=mid, embedding=tilted(0, angle)),
            seq,
            broker_time(seq),
        )
    got = edges(state)  # reading the graph indexes what is pending
    assert got[("a", "b")] == (round(math.cos(0.3), 4), "semantic", False)
    assert got[("a", "c")] == (round(math.cos(0.6), 4), "semantic", False)
    assert got[("b", "c")] == (round(math.cos(0.3), 4), "semantic", False)  # within one batch
    assert ("a", "d") not in got  # cos 1.2 = 0.36 < 0.5
    assert got[("c", "d")] == (round(math.cos(0.6), 4), "semantic", False)
    assert not any("far" in pair for pair in got)


def test_semantic_k_caps_the_links_a_memory_makes() -> None:
    state = empty_state(DIM, semantic_k=1, semantic_threshold=0.1, temporal_max=0)
    for seq, angle in enumerate([0.0, 0.2, 0.4], start=1):
        state.apply_message(
            "remember",
            remember_body(str(seq), memory_id=f"m{seq}", embedding=tilted(0, angle)),
            seq,
            broker_time(seq),
        )
    # m2 links to m1 only; m3 to its single nearest, m2 (m1 still gets m2's link)
    assert set(edges(state)) == {("m1", "m2"), ("m2", "m3")}


def test_memories_stored_close_in_time_are_linked_with_fading_weight() -> None:
    state = empty_state(
        DIM,
        semantic_k=0,
        temporal_window_s=100,
        temporal_max=2,
        temporal_half_life_s=10,
        temporal_weight=1.0,
    )
    at = [0, 10, 20, 200, 205]
    for seq, (second, mid) in enumerate(zip(at, ["a", "b", "c", "d", "e"], strict=True), start=1):
        state.apply_message(
            "remember",
            remember_body(mid, memory_id=mid, embedding=basis_array(DIM, seq)),
            seq,
            EPOCH + timedelta(seconds=second),
        )
    assert edges(state) == {
        ("a", "b"): (0.5, "temporal", False),
        ("b", "c"): (0.5, "temporal", False),
        ("a", "c"): (0.25, "temporal", False),
        ("d", "e"): (round(2**-0.5, 4), "temporal", False),
    }  # d is 180 s after c: outside the window


def test_temporal_links_start_at_the_space_temporal_weight() -> None:
    state = empty_state(DIM, semantic_k=0, temporal_half_life_s=10)  # temporal_weight 0.5
    for seq, second in enumerate([0, 10], start=1):
        state.apply_message(
            "remember",
            remember_body(f"m{seq}", memory_id=f"m{seq}", embedding=basis_array(DIM, seq)),
            seq,
            EPOCH + timedelta(seconds=second),
        )
    assert edges(state) == {("m1", "m2"): (0.25, "temporal", False)}


def test_explicit_links_set_the_weight_and_unknown_ids_are_rejected() -> None:
    state = empty_state(DIM, semantic_k=0, temporal_max=0)
    for seq, mid in enumerate(["a", "b"], start=1):
        state.apply_message(
            "remember",
            remember_body(mid, memory_id=mid, embedding=basis_array(DIM, seq)),
            seq,
            broker_time(seq),
        )
    event = state.apply_message("link", link("a", "b", 0.8, "causes"), 3, broker_time(3))
    assert isinstance(event, Linked) and (event.weight, event.link_kind) == (0.8, "causes")
    assert json.loads(event.message("alpha").model_dump_json())["source"] == "a"
    assert edges(state) == {("a", "b"): (0.8, "causes", True)}
    state.apply_message("link", link("b", "a", 0.3), 4, broker_time(4))
    assert edges(state) == {("a", "b"): (0.3, "related", True)}

    missing = state.apply_message("link", link("a", "ghost", 0.5), 5, broker_time(5))
    assert isinstance(missing, Rejected)
    assert missing.reason == "target: memory 'ghost' does not exist in space 'alpha'"
    for bad in (link("a", "a", 0.5), link("a", "b", 1.5), link("a", "b", 0.5, "Not A Kind")):
        assert isinstance(
            state.apply_message("link", bad, state.applied_seq + 1, broker_time(9)), Rejected
        )

    state.apply_message("link", link("a", "b", 0.0), 20, broker_time(20))  # weight 0 removes it
    assert edges(state) == {}


def test_forgetting_a_memory_takes_its_links_with_it() -> None:
    state = empty_state(DIM, semantic_k=3, semantic_threshold=0.1)
    for seq, angle in enumerate([0.0, 0.2, 0.4], start=1):
        state.apply_message(
            "remember",
            remember_body(str(seq), memory_id=f"m{seq}", embedding=tilted(0, angle)),
            seq,
            broker_time(seq),
        )
    state.apply_message("link", link("m1", "m3", 0.9), 4, broker_time(4))
    assert ("m1", "m2") in edges(state)
    state.apply_message("forget", forget("m2"), 5, broker_time(5))
    assert set(edges(state)) == {("m1", "m3")}
    # an upsert is a new memory: the old version's links go too
    state.apply_message(
        "remember",
        remember_body("new", memory_id="m1", embedding=basis_array(DIM, 5)),
        6,
        broker_time(6),
    )
    assert all("m1" not in pair or pair == ("m1", "m3") for pair in edges(state))
    assert edges(state).get(("m1", "m3"), (0, "", False))[2] is False  # the explicit one went


@settings(max_examples=100, deadline=None)
@given(
    places=st.lists(
        st.tuples(st.integers(0, DIM - 1), st.integers(0, 30)),
        min_size=1,
        max_size=25,
        unique=True,
    ),
    flush_after=st.sets(st.integers(1, 25)),
)
def test_the_links_do_not_depend_on_how_indexing_was_batched(
    places: list[tuple[int, int]], flush_after: set[int]
) -> None:
    """A live worker indexes in batches of whatever has arrived; a replay indexes
    in other batches. Both end with the same graph. (Distinct vectors on a coarse
    grid, so equal similarities are common; more than 8 memories tied at the
    k-th place, e.g. many copies of one vector, may be linked differently.)"""
    wal = [
        remember_body(
            f"m{i}", memory_id=f"m{i}", embedding=tilted(axis, step * 0.05), command_id=f"c{i}"
        )
        for i, (axis, step) in enumerate(places)
    ]
    one, many = empty_state(DIM), empty_state(DIM)
    for seq, data in enumerate(wal, start=1):
        one.apply_message("remember", data, seq, broker_time(seq))
        many.apply_message("remember", data, seq, broker_time(seq))
        if seq in flush_after:
            many.flush()
    assert edges(many) == edges(one)


def test_a_batch_larger_than_one_block_links_as_if_compared_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker catching up may index thousands of vectors in one batch; the
    batch is compared with itself a block of rows at a time (a 20k batch at once
    needed 4.8 GB and crashed). Blocks of 5 rows give the graph that one block
    gives."""
    rng = np.random.default_rng(7)
    wal = [
        remember_body(
            f"m{i}",
            memory_id=f"m{i}",
            embedding=rng.standard_normal(DIM).astype(np.float32),
            command_id=f"c{i}",
        )
        for i in range(40)
    ]

    def folded() -> SpaceState:
        state = empty_state(DIM)
        for seq, data in enumerate(wal, start=1):
            state.apply_message("remember", data, seq, broker_time(seq))
        state.flush()  # one batch of 40
        return state

    whole = edges(folded())
    monkeypatch.setattr(links_module, "_BATCH_ROWS", 5)
    assert any(kind == "semantic" for _, kind, _ in whole.values())
    assert edges(folded()) == whole


def imported(mid: str, seq: int, created: datetime, **history: Any) -> bytes:
    """A ``remember`` as an import writes it: the memory's history carried over."""
    doc = json.loads(
        remember_body(mid, memory_id=mid, command_id=f"c{seq}", embedding=basis_array(DIM, seq))
    )
    doc["history"] = {"created_at": created.isoformat(), **history}
    return json_bytes(doc)


def test_imported_memories_are_linked_by_their_original_times() -> None:
    """An import writes memories seconds apart; links follow when they were first
    stored, so memories a day apart in the source stay unlinked in the copy, and
    an old memory is not linked to the new ones stored before the import."""
    state = empty_state(DIM, semantic_k=0, temporal_half_life_s=10, temporal_weight=1.0)
    state.apply_message(
        "remember",
        remember_body("new", memory_id="new", embedding=basis_array(DIM, 7)),
        1,
        broker_time(1),
    )
    day = timedelta(days=1)
    for seq, (mid, created) in enumerate(
        [
            ("a", EPOCH - 2 * day),
            ("b", EPOCH - 2 * day + timedelta(seconds=10)),
            ("c", EPOCH - day),
        ],
        start=2,
    ):
        state.apply_message("remember", imported(mid, seq, created), seq, broker_time(seq))
    assert edges(state) == {("a", "b"): (0.5, "temporal", False)}
    rec = state.get("c")
    assert rec is not None and rec.created_at == EPOCH - day


def test_imported_history_never_lies_ahead_of_the_message() -> None:
    state = empty_state(DIM, semantic_k=0, temporal_max=0)
    future = broker_time(1) + timedelta(days=3)
    state.apply_message("remember", imported("a", 1, future, recalls=4), 1, broker_time(1))
    state.apply_message(
        "remember",
        imported("b", 2, EPOCH - timedelta(days=9), recalls=2, last_recall=future.isoformat()),
        2,
        broker_time(2),
    )
    a, b = state.get("a"), state.get("b")
    assert a is not None and b is not None
    assert (a.created_at, a.recalls, a.last_recall) == (broker_time(1), 4, None)
    assert (b.created_at, b.recalls, b.last_recall) == (
        EPOCH - timedelta(days=9),
        2,
        broker_time(2),
    )


def test_imported_history_keeps_retention() -> None:
    """Decay is computed from the carried-over age and recalls, as in the source."""
    source = empty_state(DIM, semantic_k=0, temporal_max=0)
    source.apply_message(
        "remember", remember_body("m", memory_id="m", embedding=basis_array(DIM, 1)), 1, EPOCH
    )
    for seq in (2, 3):  # recalled twice, an hour and two hours later
        source.apply_message(
            "reinforce",
            json_bytes({"schema_version": 1, "command_id": f"r{seq}", "memory_ids": ["m"]}),
            seq,
            EPOCH + timedelta(hours=seq - 1),
        )
    src = source.get("m")
    assert src is not None and src.recalls == 2
    copy = empty_state(DIM, semantic_k=0, temporal_max=0)
    history = {"recalls": src.recalls, "last_recall": src.last_recall.isoformat()}  # type: ignore[union-attr]
    copy.apply_message(
        "remember", imported("m", 1, src.created_at, **history), 1, EPOCH + timedelta(days=5)
    )
    got = copy.get("m")
    assert got is not None
    assert (got.created_at, got.recalls, got.last_recall) == (
        src.created_at,
        src.recalls,
        src.last_recall,
    )
    later = (EPOCH + timedelta(days=7)).timestamp()
    cue = basis_array(DIM, 1)
    [want_r] = source.recall(cue, 1, now=later)
    [got_r] = copy.recall(cue, 1, now=later)
    assert got_r.retention == want_r.retention < 1.0
