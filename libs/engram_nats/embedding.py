"""Text embedded off the event loop: the vectors of a write's memories and the
cue of a recall, with each space's embedder.

Two lanes of threads. Writes (one remember, a batch, an import) go to the
``documents`` lane: one job per request, split only into the embedder's own
batch size (1000 texts are a few engine calls or endpoint requests, not 1000),
at most :data:`DOCUMENT_THREADS` at once, and at most :data:`DOCUMENT_QUEUE`
waiting behind them (more writers wait on the event loop, without holding a
thread). Recall cues go to their own ``queries`` lane, so a large import being
embedded never keeps a recall waiting for a thread (the model releases the GIL
while it computes; the two lanes share the cores).

A cheap embedder (``inline``: no model, no I/O) embeds a few texts on the event
loop itself, where a thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from engram_contract.embedders import Embedder

#: texts a cheap (inline) embedder embeds on the event loop
INLINE_MAX = 32
#: write jobs embedding at once, and waiting for a thread
DOCUMENT_THREADS = 1
DOCUMENT_QUEUE = 8
QUERY_THREADS = 2


class Embedding:
    """The two lanes of one client of Engram (a gateway process, an SDK client)."""

    def __init__(self) -> None:
        self._documents = ThreadPoolExecutor(DOCUMENT_THREADS, "engram-embed-docs")
        self._queries = ThreadPoolExecutor(QUERY_THREADS, "engram-embed-query")
        self._admitted = asyncio.Semaphore(DOCUMENT_THREADS + DOCUMENT_QUEUE)

    async def documents(self, embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
        """The stored vectors of ``texts`` (``(n, dim)`` float32, unit rows)."""
        if embedder.inline and len(texts) <= INLINE_MAX:
            return embedder.embed(texts)
        async with self._admitted:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._documents, _batched, embedder, texts)

    async def query(self, embedder: Embedder, text: str) -> np.ndarray:
        """The recall cue of ``text`` (``(dim,)`` float32, unit length)."""
        if embedder.inline:
            vec: np.ndarray = embedder.embed_queries([text])[0]
            return vec
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._queries, embedder.embed_queries, [text])
        out: np.ndarray = rows[0]
        return out

    def close(self) -> None:
        """Let the threads go once their work is done (queued jobs still run)."""
        self._documents.shutdown(wait=False)
        self._queries.shutdown(wait=False)


def _batched(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """All of ``texts`` in calls of at most ``embedder.max_batch``."""
    step = max(1, embedder.max_batch)
    if len(texts) <= step:
        return embedder.embed(texts)
    return np.concatenate(
        [embedder.embed(texts[i : i + step]) for i in range(0, len(texts), step)], axis=0
    )
