"""Recall quality: answers that only links lead to (the "cognitive recall" targets).

The data set (``tests/unit/recall_dataset.py``): 3000 random unit-vector
distractors in dim 64 and 50 questions, each a cue, a bridge memory at cosine
0.9 from it and 3 answers with random vectors, linked to the bridge by explicit
links of weight 0.9. Recall@10 is the share of answers in the top 10, with the
API's default query parameters (``RecallQuery.of(RecallRequest(...))``) and no
decay (``now=None``: the data set measures what associations find; spaced 10
minutes apart it spans three weeks, and decay would rank by age instead).
Targets: spreading ≥ 0.9, similarity ≤ 0.3.

Memories are stored in one shuffled order, so a question's bridge and answers
are never stored together and only the explicit links lead from one to the
other. The space keeps the default link settings, so temporal links form as in
production; both spacings of :data:`LAYOUTS` are measured: 1 s apart, where
every memory is temporally linked (weight ≈ 0.98) to its unrelated neighbours in
the stream, as in a busy space, and 10 min apart, beyond the 300 s temporal
window, where only semantic and explicit links exist.

``pytest -s`` prints the figures; ``ops/bench/quality.py`` prints them as a table.
"""

from __future__ import annotations

import numpy as np
import pytest

from engram_worker.core.similarity import similarities
from engram_worker.core.state import SpaceState
from ops.bench.recall_dataset import LAYOUTS, MODES, Dataset, build, diagnose, load, measure
from tests.helpers import live_records

SPREADING_AT_LEAST = 0.9
SIMILARITY_AT_MOST = 0.3
#: recall@10 per mode on this data set, as (at least, at most): links must find the
#: answers, similarity must not (hybrid mixes both; only its range is checked)
RECALL_AT_10_BOUNDS: dict[str, tuple[float, float]] = {
    "spreading": (SPREADING_AT_LEAST, 1.0),
    "similarity": (0.0, SIMILARITY_AT_MOST),
    "hybrid": (0.0, 1.0),
}


@pytest.fixture(scope="module", params=list(LAYOUTS), ids=list(LAYOUTS))
def space(request: pytest.FixtureRequest) -> tuple[str, Dataset, SpaceState]:
    layout: str = request.param
    ds = build(gap_s=LAYOUTS[layout])
    return layout, ds, load(ds)


def test_the_data_set_hides_the_answers_from_the_cue(
    space: tuple[str, Dataset, SpaceState],
) -> None:
    # the premise: each bridge is the cue's nearest memory, and each answer is
    # reachable through its explicit link (and no more similar than a distractor)
    _, ds, state = space
    graph = state.graph
    # exact similarities (the HNSW index is approximate, and built in parallel)
    records = live_records(state)
    vectors = np.stack([state.indexing.vector(r.key) for r in records])  # type: ignore[misc]
    for question in ds.questions:
        sims = similarities(state.index.metric, question.cue, vectors)
        assert records[int(np.argmax(sims))].id == question.bridge
        bridge = state.get(question.bridge)
        assert bridge is not None
        for answer in question.answers:
            rec = state.get(answer)
            assert rec is not None
            assert graph.edge(bridge.key, rec.key) == (0.9, "related", True)


def test_figures(space: tuple[str, Dataset, SpaceState]) -> None:
    layout, ds, state = space
    print(f"\nrecall@10 and MRR@10, {ds.memories} memories, {layout}:")
    out_of_bounds = []
    for mode in MODES:
        figures = measure(state, ds, mode)
        assert 0.0 <= figures.mrr <= 1.0
        print(f"  {mode:<10} recall@10 {figures.recall_at_k:.3f}  MRR@10 {figures.mrr:.3f}")
        low, high = RECALL_AT_10_BOUNDS[mode]
        if not low <= figures.recall_at_k <= high:
            out_of_bounds.append(
                f"{mode} recall@10 {figures.recall_at_k:.3f} not in [{low}, {high}]"
            )
    print(diagnose(state, ds))
    assert not out_of_bounds, f"{layout}: {'; '.join(out_of_bounds)}"


def test_similarity_alone_does_not_find_the_answers(
    space: tuple[str, Dataset, SpaceState],
) -> None:
    _, ds, state = space
    found = measure(state, ds, "similarity").recall_at_k
    assert found <= SIMILARITY_AT_MOST


def test_spreading_activation_finds_the_answers_over_their_links(
    space: tuple[str, Dataset, SpaceState],
) -> None:
    layout, ds, state = space
    found = measure(state, ds, "spreading").recall_at_k
    assert found >= SPREADING_AT_LEAST, (
        f"{layout}: spreading recall@10 {found:.3f} < {SPREADING_AT_LEAST}\n{diagnose(state, ds)}"
    )
