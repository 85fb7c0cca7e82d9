"""Recall by text across embedders: recall@1 and recall@5 of paraphrased questions,
and how long embedding takes.

    .venv/bin/python ops/bench/embed_quality.py [--repeat 3] [--queries 50]

No server. The labelled set ``data/paraphrase.jsonl`` (beside this script: 200
facts an agent might remember about its users, each with a question written to
share few words with it, e.g. "The user has a cat called Miso." / "what pet does
the user have?") is stored in a fresh ``SpaceState`` per embedder (each fact 10
min after the last: no temporal links between them), then every question is
recalled by text, in ``similarity`` mode and in the API's default mode
(``spreading``), with the link settings a new space of the embedder gets.
Embedders: ``hash-ngram-v1``, ``e5-small``, the ``openai`` endpoint when
``ENGRAM_EMBED_URL`` is set (``ENGRAM_EMBED_DIM`` or ``--openai-dim``), and
``wordllama`` (a candidate that was not adopted) when it is installed.

Timings (median of ``--repeat`` runs): the first call (model load included),
one batch of 100 facts, texts per second in that batch, and one query alone
(median over ``--queries`` questions): what a recall by text adds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from engram_contract.embedders import SEMANTIC_THRESHOLDS, Embedder, get_embedder
from engram_contract.messages import LinkSettings, RecallRequest, SpaceRecord, encode_embedding
from engram_worker.core.recall import RecallQuery
from engram_worker.core.state import SpaceState

DATA = Path(__file__).parent / "data" / "paraphrase.jsonl"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
MODES = ("similarity", "spreading")


@dataclass(frozen=True)
class Pair:
    id: str
    fact: str
    question: str


def pairs(path: Path = DATA) -> list[Pair]:
    return [Pair(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


class WordLlama:
    """wordllama's bundled 256-d model, as an embedder (bench only). Its loader
    looks for the bundled tokenizer in the wrong folder and would download it,
    so the bundled file is copied into a cache folder first."""

    name = "wordllama (candidate)"
    dim = 256
    max_batch = 10_000
    inline = False

    def __init__(self) -> None:
        import wordllama

        cache = Path(tempfile.mkdtemp(prefix="wordllama-"))
        bundled = Path(wordllama.__file__).parent / "tokenizers"
        shutil.copytree(bundled, cache / "tokenizers")
        self.model = wordllama.WordLlama.load(cache_dir=cache, disable_download=True)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.embed(list(texts), norm=True), dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)


def embedders(openai_dim: int | None) -> list[tuple[str, Any]]:
    """(label, a callable making the embedder): made inside the timing."""
    out: list[tuple[str, Any]] = [
        ("hash-ngram-v1", lambda: get_embedder("hash-ngram-v1", 384)),
        ("e5-small", lambda: get_embedder("e5-small", 384)),
    ]
    if os.environ.get("ENGRAM_EMBED_URL"):
        dim = openai_dim or int(os.environ.get("ENGRAM_EMBED_DIM") or 0) or 384
        model = os.environ.get("ENGRAM_EMBED_MODEL", "text-embedding-3-small")
        out.append((f"openai ({model})", lambda: get_embedder("openai", dim)))
    try:
        import wordllama  # noqa: F401
    except ImportError:
        pass
    else:
        out.append(("wordllama (candidate)", WordLlama))
    return out


def space(embedder: Embedder, data: list[Pair]) -> SpaceState:
    # the links a new space of this embedder gets (e5-small: semantic threshold 0.9)
    threshold = SEMANTIC_THRESHOLDS.get(embedder.name)
    links = LinkSettings() if threshold is None else LinkSettings(semantic_threshold=threshold)
    record = SpaceRecord(
        id="bench", dim=embedder.dim, embedder="bench", created_at=EPOCH, links=links
    )
    state = SpaceState(record, embedder)  # type: ignore[arg-type]
    vectors = embedder.embed([p.fact for p in data])
    for n, (pair, vec) in enumerate(zip(data, vectors, strict=True), start=1):
        doc = {
            "schema_version": 1,
            "command_id": f"c-{pair.id}",
            "memory": {"id": pair.id, "content": pair.fact, "embedding_b64": encode_embedding(vec)},
        }
        event = state.apply_message(
            "remember", json.dumps(doc).encode(), n, EPOCH + timedelta(minutes=10 * n)
        )
        assert event is not None and type(event).__name__ == "Stored", event
    state.flush()
    return state


def recall_at(
    state: SpaceState, cues: np.ndarray, data: list[Pair], mode: str
) -> tuple[float, float]:
    """(recall@1, recall@5): share of questions whose fact ranks first, in the top 5."""
    first = top5 = 0
    for pair, cue in zip(data, cues, strict=True):
        q = RecallQuery.of(RecallRequest(embedding=[float(x) for x in cue], mode=mode, k=5))  # type: ignore[arg-type]
        ids = [r.memory.id for r in state.recall(cue, 5, q)]
        first += bool(ids) and ids[0] == pair.id
        top5 += pair.id in ids
    return first / len(data), top5 / len(data)


def timings(make: Any, data: list[Pair], repeat: int, queries: int) -> tuple[Any, dict[str, float]]:
    start = time.perf_counter()
    embedder = make()
    embedder.embed_queries([data[0].question])
    first_ms = (time.perf_counter() - start) * 1000
    facts = [p.fact for p in data[:100]]
    batches = []
    for _ in range(repeat):
        t = time.perf_counter()
        embedder.embed(facts)
        batches.append(time.perf_counter() - t)
    singles = []
    for p in data[:queries]:
        t = time.perf_counter()
        embedder.embed_queries([p.question])
        singles.append(time.perf_counter() - t)
    batch = statistics.median(batches)
    return embedder, {
        "first_call_ms": first_ms,
        "batch100_ms": batch * 1000,
        "texts_per_s": len(facts) / batch,
        "query_ms": statistics.median(singles) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of the batch of 100")
    parser.add_argument("--queries", type=int, default=50, help="single queries timed")
    parser.add_argument("--openai-dim", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    data = pairs()
    rows: list[dict[str, Any]] = []
    for label, make in embedders(args.openai_dim):
        embedder, times = timings(make, data, args.repeat, args.queries)
        state = space(embedder, data)
        cues = embedder.embed_queries([p.question for p in data])
        row: dict[str, Any] = {"embedder": label, "dim": embedder.dim, **times}
        for mode in MODES:
            row[f"{mode}_r1"], row[f"{mode}_r5"] = recall_at(state, cues, data, mode)
        rows.append(row)
        print(f"  {label}: done", flush=True)
    print(
        f"\nRecall by text: {len(data)} facts, {len(data)} paraphrased questions "
        f"(data/paraphrase.jsonl); timings median of {args.repeat} batches of 100 facts "
        f"and {args.queries} single queries, on {os.cpu_count()} shared cores.\n"
    )
    print(
        "| embedder | dim | recall@1 | recall@5 | recall@1 (spreading) | recall@5 (spreading) "
        "| batch of 100 | texts/s batched | one query | first call |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['embedder']} | {r['dim']} | {r['similarity_r1']:.3f} | {r['similarity_r5']:.3f} "
            f"| {r['spreading_r1']:.3f} | {r['spreading_r5']:.3f} | {r['batch100_ms']:.0f} ms "
            f"| {r['texts_per_s']:.0f} | {r['query_ms']:.1f} ms | {r['first_call_ms']:.0f} ms |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
