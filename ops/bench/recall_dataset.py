"""A generated recall data set whose answers only links can find.

Each question has a cue, a *bridge* memory close to the cue (cosine 0.9) and a
few *answer* memories with random vectors, no more similar to the cue than any
of the thousands of random *distractors*; each answer is tied to its bridge by
an explicit ``link`` command (weight 0.9). Similarity search finds the bridge but
not the answers; spreading activation should reach them over the links.

Every memory goes through the fold as the WAL consumer hands it over, into a
space with the default :class:`LinkSettings`, so semantic and temporal links
form as in production. All memories are stored in one shuffled order (a
question's bridge and answers are not stored together, so no temporal link
joins them and no link but the explicit ones leads to an answer), ``gap_s``
seconds apart; the links follow. :data:`LAYOUTS` names the two spacings
measured: 1 s apart, where the default temporal links (300 s window, 3 previous
memories, half-life 60 s) join every memory to its unrelated neighbours in the
stream with weight ≈ 0.98, as in a busy space; and 10 min apart, beyond the
temporal window, where only semantic and explicit links exist.

Used by ``tests/unit/test_recall_quality.py`` (the targets) and
``ops/bench/quality.py`` (the figures the docs quote).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from engram_contract.embedders import HashNgramEmbedder
from engram_contract.messages import (
    LinkSettings,
    RecallMode,
    RecallRequest,
    SpaceRecord,
    encode_embedding,
)
from engram_worker.core.activation import spread
from engram_worker.core.events import Rejected
from engram_worker.core.recall import RecallQuery
from engram_worker.core.state import SpaceState

SPACE = "quality"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
MODES: tuple[RecallMode, ...] = ("similarity", "spreading", "hybrid")
# name → seconds between two memories in the stream
LAYOUTS: dict[str, float] = {"1 s apart": 1.0, "10 min apart": 600.0}


@dataclass(frozen=True)
class Question:
    cue: np.ndarray
    bridge: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class WalEntry:
    verb: str
    data: bytes
    seq: int
    timestamp: datetime


@dataclass(frozen=True)
class Dataset:
    dim: int
    wal: list[WalEntry]
    questions: list[Question]
    links: LinkSettings = field(default_factory=LinkSettings)

    @property
    def end(self) -> float:
        """When the last message was written (seconds since the epoch)."""
        return self.wal[-1].timestamp.timestamp()

    @property
    def memories(self) -> int:
        return sum(e.verb == "remember" for e in self.wal)


def _unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def _near(cue: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at cosine ``cos`` from the unit vector ``cue``."""
    other = rng.standard_normal(cue.shape)
    other -= float(other @ cue) * cue
    return _unit(cos * cue + np.sqrt(1.0 - cos * cos) * _unit(other))


def _body(doc: dict[str, Any]) -> bytes:
    return json.dumps({"schema_version": 1, **doc}).encode()


def build(
    *,
    seed: int = 7,
    dim: int = 64,
    distractors: int = 3000,
    questions: int = 50,
    answers: int = 3,
    bridge_cos: float = 0.9,
    link_weight: float = 0.9,
    gap_s: float = LAYOUTS["1 s apart"],
    links: LinkSettings | None = None,
) -> Dataset:
    """The data set: every memory stored in a shuffled order, ``gap_s`` seconds
    apart, then the bridge–answer links (one ``link`` command each)."""
    rng = np.random.default_rng(seed)
    memories: list[tuple[str, str, np.ndarray]] = [
        (f"d{i:05d}", f"distractor {i}", _unit(rng.standard_normal(dim)))
        for i in range(distractors)
    ]
    asked: list[Question] = []
    pairs: list[tuple[str, str]] = []
    for q in range(questions):
        cue = _unit(rng.standard_normal(dim))
        bridge = f"q{q:03d}-bridge"
        memories.append((bridge, f"bridge of question {q}", _near(cue, bridge_cos, rng)))
        ids = tuple(f"q{q:03d}-answer{a}" for a in range(answers))
        for a, mid in enumerate(ids):
            memories.append((mid, f"answer {a} of question {q}", _unit(rng.standard_normal(dim))))
            pairs.append((bridge, mid))
        asked.append(Question(cue=cue, bridge=bridge, answers=ids))
    wal: list[WalEntry] = []
    for n, i in enumerate(rng.permutation(len(memories)).tolist(), start=1):
        mid, content, vec = memories[i]
        doc: dict[str, Any] = {
            "command_id": f"r-{mid}",
            "memory": {"id": mid, "content": content, "embedding_b64": encode_embedding(vec)},
        }
        wal.append(WalEntry("remember", _body(doc), n, EPOCH + timedelta(seconds=n * gap_s)))
    at = wal[-1].timestamp
    for source, target in pairs:
        doc = {
            "command_id": f"l-{source}-{target}",
            "source": source,
            "target": target,
            "weight": link_weight,
        }
        wal.append(WalEntry("link", _body(doc), len(wal) + 1, at))
    return Dataset(dim=dim, wal=wal, questions=asked, links=links or LinkSettings())


def load(ds: Dataset) -> SpaceState:
    """A fresh space folded from the data set's WAL (and indexed)."""
    record = SpaceRecord(
        id=SPACE, dim=ds.dim, embedder=HashNgramEmbedder.name, created_at=EPOCH, links=ds.links
    )
    state = SpaceState(record, HashNgramEmbedder(ds.dim))
    for entry in ds.wal:
        event = state.apply_message(entry.verb, entry.data, entry.seq, entry.timestamp)
        if event is None or isinstance(event, Rejected):
            raise AssertionError(f"message {entry.seq} did not fold: {event}")
    state.flush()
    return state


def query(cue: np.ndarray, mode: RecallMode, **params: Any) -> RecallQuery:
    """The query a client sends with the API's defaults (``params`` override them)."""
    return RecallQuery.of(RecallRequest(embedding=[float(x) for x in cue], mode=mode, **params))


@dataclass(frozen=True)
class Figures:
    mode: str
    recall_at_k: float  # share of all answers in the top k
    mrr: float  # mean over questions of 1 / rank of the first answer (0: none in the top k)
    ranks: list[list[int | None]]  # per question, each answer's rank (None: not in the top k)


def measure(
    state: SpaceState,
    ds: Dataset,
    mode: RecallMode,
    *,
    k: int = 10,
    now: float | None = None,
    **params: Any,
) -> Figures:
    """Recall@k and MRR@k of ``mode`` over every question, with the API's defaults
    (``params`` override them; ``now``: decay measured to then, ``None``: none)."""
    found = 0
    reciprocal = 0.0
    ranks: list[list[int | None]] = []
    for question in ds.questions:
        q = query(question.cue, mode, k=k, **params)
        rank_of = {
            r.memory.id: n for n, r in enumerate(state.recall(question.cue, q.k, q, now), start=1)
        }
        mine = [rank_of.get(a) for a in question.answers]
        ranks.append(mine)
        found += sum(r is not None for r in mine)
        first = min((r for r in mine if r is not None), default=None)
        reciprocal += 0.0 if first is None else 1.0 / first
    total = sum(len(q.answers) for q in ds.questions)
    return Figures(
        mode=mode, recall_at_k=found / total, mrr=reciprocal / len(ds.questions), ranks=ranks
    )


def diagnose(state: SpaceState, ds: Dataset, *, k: int = 10) -> str:
    """Why spreading recall ranks the answers where it does (default parameters, no
    decay): their activation and rank among everything reached, what fills the top
    ``k`` instead, and the bridges' neighbourhoods. (Every memory here has the same
    confidence, so activation orders as the score does.)"""
    params = query(ds.questions[0].cue, "spreading")
    fanout = params.spread.max_fanout
    graph = state.graph
    answer_act: list[float] = []
    answer_rank: list[int] = []
    kth: list[float] = []
    top_by: Counter[str] = Counter()
    degree: Counter[str] = Counter()
    in_fanout = 0
    for question in ds.questions:
        # the seeds recall starts from: the seed_k most similar memories
        nearest = state.recall(question.cue, params.seed_k)
        seeds = {_key(state, r.memory.id): min(max(r.similarity, 0.0), 1.0) for r in nearest}
        reached = spread(seeds, graph.neighbours, params.spread)
        order = sorted(reached, key=lambda key: -reached[key].activation)
        rank = {key: n for n, key in enumerate(order, start=1)}
        if len(order) >= k:
            kth.append(reached[order[k - 1]].activation)
        for key in order[:k]:
            r = reached[key]
            top_by["seed" if r.hops == 0 else f"via {r.kind}"] += 1
        answer_keys = {_key(state, a) for a in question.answers}
        for key in answer_keys & reached.keys():
            answer_rank.append(rank[key])
            answer_act.append(reached[key].activation)
        neighbours = graph.neighbours(_key(state, question.bridge))
        degree.update(kind for _, _, kind in neighbours)
        in_fanout += sum(key in answer_keys for key, _, _ in neighbours[:fanout])
    n_q = len(ds.questions)
    n_a = sum(len(q.answers) for q in ds.questions)

    def mean(xs: list[float]) -> str:
        return f"{statistics.fmean(xs):.3f}" if xs else "-"

    def share(counts: Counter[str]) -> str:
        return ", ".join(f"{how} {n / n_q:.2f}" for how, n in counts.most_common())

    ranks = f"{statistics.median(answer_rank):.0f}" if answer_rank else "-"
    return "\n".join(
        [
            f"spreading, default parameters (seed_k {params.seed_k}, max_hops "
            f"{params.spread.max_hops}, hop_decay {params.spread.hop_decay}, threshold "
            f"{params.spread.threshold}, max_fanout {fanout}), no decay:",
            f"  answers reached: {len(answer_act)}/{n_a}; their activation mean "
            f"{mean(answer_act)}, rank median {ranks}",
            f"  activation at rank {k}: mean {mean(kth)}",
            f"  the top {k} per question, by how reached: {share(top_by)}",
            f"  the bridge's links, per bridge: {share(degree)}; answers among the "
            f"{fanout} strongest (the fanout): {in_fanout / n_q:.2f} of {n_a / n_q:.0f}",
        ]
    )


def _key(state: SpaceState, memory_id: str) -> int:
    rec = state.get(memory_id)
    assert rec is not None, memory_id
    return rec.key
