"""A metric's similarities (higher is closer), as :class:`~engram_worker.core.index.
VectorIndex` scores them: from usearch's distances, and computed exactly from
vectors for a cue, a batch against itself, or pairs of rows."""

from __future__ import annotations

import numpy as np

from engram_contract.messages import Metric


def from_distances(metric: Metric, distances: np.ndarray) -> np.ndarray:
    """usearch's distances as similarities (float32)."""
    if metric == "l2sq":
        return (1.0 / (1.0 + distances)).astype(np.float32)
    # usearch's cos and ip distances are 1 - cosine / 1 - dot product
    return (1.0 - distances).astype(np.float32)


def pairwise(metric: Metric, vectors: np.ndarray) -> np.ndarray:
    """Similarities between every two rows of ``vectors`` (as the index's scores)."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        return _pairwise(metric, np.asarray(vectors, dtype=np.float64))


def _pairwise(metric: Metric, v: np.ndarray) -> np.ndarray:
    out: np.ndarray
    if metric == "cos":
        norms = np.linalg.norm(v, axis=1)
        unit = v / np.where(norms == 0, 1.0, norms)[:, None]
        out = unit @ unit.T
    elif metric == "ip":
        out = v @ v.T
    else:
        sq = np.sum(v * v, axis=1)
        out = 1.0 / (1.0 + np.maximum(sq[:, None] + sq[None, :] - 2.0 * (v @ v.T), 0.0))
    return out.astype(np.float32)


def similarities(metric: Metric, cue: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Similarity of each row of ``vectors`` to ``cue`` (as the index's scores)."""
    c = np.asarray(cue, dtype=np.float64)
    v = np.asarray(vectors, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
        if metric == "cos":
            norms = np.linalg.norm(v, axis=1) * np.linalg.norm(c)
            out = (v @ c) / np.where(norms == 0, 1.0, norms)
        elif metric == "ip":
            out = v @ c
        else:
            out = 1.0 / (1.0 + np.sum((v - c) ** 2, axis=1))
    return np.asarray(out, dtype=np.float32)


def row_similarities(metric: Metric, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Similarity of each row of ``a`` to the same row of ``b``, in float64 from
    the float32 vectors (deterministic: the same two vectors always give the
    same number)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
        if metric == "cos":
            norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
            out = np.einsum("ij,ij->i", x, y) / np.where(norms == 0, 1.0, norms)
        elif metric == "ip":
            out = np.einsum("ij,ij->i", x, y)
        else:
            out = 1.0 / (1.0 + np.sum((x - y) ** 2, axis=1))
    return np.asarray(out, dtype=np.float64)
