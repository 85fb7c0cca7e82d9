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


def pairwise(metric: Metric, vectors: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
    """Similarities between every row of ``vectors`` and every row of ``others``
    (by default ``vectors`` itself), as the index's scores."""
    v = np.asarray(vectors, dtype=np.float64)
    w = v if others is None else np.asarray(others, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        return _cross(metric, v, w)


def _cross(metric: Metric, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    out: np.ndarray
    if metric == "cos":
        v = v / _norms(v)[:, None]
        w = w / _norms(w)[:, None]
        out = v @ w.T
    elif metric == "ip":
        out = v @ w.T
    else:
        sv, sw = np.sum(v * v, axis=1), np.sum(w * w, axis=1)
        out = 1.0 / (1.0 + np.maximum(sv[:, None] + sw[None, :] - 2.0 * (v @ w.T), 0.0))
    return out.astype(np.float32)


def _norms(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1)
    return np.where(norms == 0, 1.0, norms)


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
