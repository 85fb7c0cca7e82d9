"""Text ingest and recall by text through HTTP with the default embedder, beside
vector ingest and the ``hash-ngram-v1`` embedder.

    .venv/bin/python ops/bench/embed_ingest.py [--n 1000] [--batch 100] [--repeat 3]

Starts its own nats-server, worker and gateway (``stack.py``; new spaces get the
default embedder, ``e5-small``). Per run: ``--n`` memories POSTed in batches of
``--batch`` (one request at a time) as text into an ``e5-small`` space, as text
into a ``hash-ngram-v1`` space, and with their vectors (384-d, base64) into a
third; then the 200 questions of ``data/paraphrase.jsonl`` recalled by text one
at a time (the embedding of the cue included) in the first two, and by vector in
the third. Prints memories/s (median over runs) and recall p50/p95 (all runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from stack import running_stack

from engram_contract.messages import encode_embedding

DATA = Path(__file__).parent / "data" / "paraphrase.jsonl"


def texts(n: int) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    facts = [r["fact"] for r in rows]
    out = [f"{facts[i % len(facts)]} (note {i})" for i in range(n)]
    return out, [r["question"] for r in rows]


async def ingest(http: httpx.AsyncClient, space: str, bodies: list[dict[str, object]]) -> float:
    start = time.perf_counter()
    for body in bodies:
        r = await http.post(f"/api/v1/spaces/{space}/memories", json=body, timeout=600)
        r.raise_for_status()
    return time.perf_counter() - start


async def recalls(
    http: httpx.AsyncClient, space: str, cues: list[dict[str, object]]
) -> list[float]:
    out = []
    for cue in cues:
        t = time.perf_counter()
        r = await http.post(f"/api/v1/spaces/{space}/recall", json={**cue, "k": 5})
        r.raise_for_status()
        out.append(time.perf_counter() - t)
    return out


async def one_run(url: str, n: int, batch: int) -> dict[str, tuple[float, list[float]]]:
    contents, questions = texts(n)
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    run = uuid.uuid4().hex[:6]
    out: dict[str, tuple[float, list[float]]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for label, embedder, with_vectors in (
            ("text, e5-small", "e5-small", False),
            ("text, hash-ngram-v1", "hash-ngram-v1", False),
            ("vectors", "e5-small", True),
        ):
            space = f"bench-{run}-{embedder}-{'v' if with_vectors else 't'}"
            r = await http.post(
                "/api/v1/spaces", json={"id": space, "dim": 384, "embedder": embedder}
            )
            r.raise_for_status()
            bodies: list[dict[str, object]] = []
            for lo in range(0, n, batch):
                memories: list[dict[str, object]] = []
                for i in range(lo, min(n, lo + batch)):
                    m: dict[str, object] = {"content": contents[i]}
                    if with_vectors:
                        m["embedding_b64"] = encode_embedding(vectors[i])
                    memories.append(m)
                bodies.append({"memories": memories})
            seconds = await ingest(http, space, bodies)
            if with_vectors:
                cues: list[dict[str, object]] = [
                    {"embedding_b64": encode_embedding(vectors[i % n])}
                    for i in range(len(questions))
                ]
            else:
                cues = [{"query": q} for q in questions]
            out[label] = (n / seconds, await recalls(http, space, cues))
            print(f"  {label}: {n / seconds:.0f} memories/s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with running_stack() as stack:
        runs = [
            asyncio.run(one_run(stack.http_url, args.n, args.batch)) for _ in range(args.repeat)
        ]
    print(
        f"\n{args.n} memories in batches of {args.batch}, one request at a time; 200 recalls "
        f"by text (k=5, default mode) one at a time; median of {args.repeat} runs.\n"
    )
    print("| ingest | memories/s | recall p50 | recall p95 |")
    print("|---|---:|---:|---:|")
    for label in runs[0]:
        rate = statistics.median(r[label][0] for r in runs)
        lat = sorted(x for r in runs for x in r[label][1])
        p50, p95 = lat[len(lat) // 2], lat[int(len(lat) * 0.95)]
        print(f"| {label} | {rate:.0f} | {p50 * 1000:.1f} ms | {p95 * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
