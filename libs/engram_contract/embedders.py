"""Embedders turn text into vectors. A space names its embedder in its record.

The built-in ``hash-ngram-v1`` needs no downloads and is deterministic across
processes and machines (feature hashing with CRC32, not Python's salted
``hash``): word unigrams, word bigrams and character trigrams hashed into
``dim`` signed buckets, then L2-normalised. Texts that share words or word
pieces get similar vectors, which is enough for text recall out of the box. A
real model plugs in by implementing :class:`Embedder` and adding its factory to
:data:`EMBEDDERS` (one table, read-only at run time: every process of a deployment
must offer the same embedders, so none is registered on the fly).
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

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a ``(len(texts), dim)`` float32 array of unit-length rows."""
        ...


class UnknownEmbedder(ValueError):
    pass


class HashNgramEmbedder:
    """Deterministic feature-hashing embedder (see module docstring)."""

    name = "hash-ngram-v1"

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


EmbedderFactory = Callable[[int], Embedder]

#: Every embedder a space may name: name → factory taking the space's dim.
EMBEDDERS: Final[Mapping[str, EmbedderFactory]] = MappingProxyType(
    {HashNgramEmbedder.name: HashNgramEmbedder}
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
