"""What a space's index reports as its memory (``engram_index_memory_bytes``,
status ``index_bytes``): the bytes its vectors and links hold, not usearch's
reserved arenas (a 10-vector space reported 16 MiB)."""

from __future__ import annotations

import numpy as np

from engram_worker.core.index import VectorIndex


def _filled(n: int, dim: int = 64) -> VectorIndex:
    index = VectorIndex(dim)
    vectors = np.random.default_rng(n).standard_normal((n, dim)).astype(np.float32)
    index.add(np.arange(1, n + 1, dtype=np.uint64), vectors)
    return index


def test_a_small_index_reports_about_its_vectors_not_a_reserved_arena() -> None:
    index = _filled(10)
    vector_bytes = 10 * 64 * 4
    assert vector_bytes <= index.memory_bytes < 64 * 1024


def test_the_estimate_grows_with_the_vectors_and_survives_a_restore() -> None:
    small, large = _filled(100), _filled(2000)
    assert large.memory_bytes > 15 * small.memory_bytes
    assert 2000 * 64 * 4 <= large.memory_bytes < 2 * 2000 * 64 * 4 + 2000 * 512
    restored = VectorIndex.from_bytes(large.to_bytes(), 64, "cos")
    assert restored.memory_bytes == large.memory_bytes
