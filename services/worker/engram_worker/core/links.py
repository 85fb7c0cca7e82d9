"""Finding the links a memory gets as it is indexed: temporal (to the memories
stored just before it) and semantic (to its nearest among those indexed before
it). Explicit links come from ``link`` commands and consolidated ones from
``consolidate`` commands, in the fold."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import numpy as np

from engram_contract.messages import LinkSettings, Metric
from engram_worker.core.graph import SEMANTIC, TEMPORAL
from engram_worker.core.index import EXACT_SEARCH_BELOW, VectorIndex
from engram_worker.core.records import StoredMemory
from engram_worker.core.similarity import pairwise, row_similarities

RECENT = 16  # memories remembered for temporal links (temporal_max ≤ 16)
_MIN_WEIGHT = 0.01  # weaker derived links are not made
_LINK_EXPANSION = 16  # HNSW search width when finding semantic links
_TIE_SLACK = 8  # extra candidates when finding semantic links
_BATCH_ROWS = 1024  # rows of a batch compared with the batch at once

#: a derived link: (key, other key, weight, kind)
Found = tuple[int, int, float, str]


class LinkFinder:
    """Derives links with one space's :class:`LinkSettings`. Remembers the last
    memories stored (``recent``: key and time), which the next ones link to."""

    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        self.recent: deque[tuple[int, float]] = deque(maxlen=RECENT)  # (key, stored at)

    def temporal(
        self, taken: Mapping[int, np.ndarray], by_key: Mapping[int, StoredMemory]
    ) -> list[Found]:
        """Link each memory to up to ``temporal_max`` memories stored before it
        within ``temporal_window_s``, weight halving every ``temporal_half_life_s``.
        Runs as memories are taken for indexing, in stream order."""
        ls = self.settings
        links: list[Found] = []
        if not taken or ls.temporal_max == 0 or ls.temporal_window_s <= 0:
            return links
        for key in taken:
            rec = by_key[key]
            if rec.kind != "episodic":
                continue  # a consolidated memory is linked to its members instead
            at = rec.created_at.timestamp()
            for n, (prev, prev_at) in enumerate(reversed(self.recent)):
                # abs: an imported memory keeps its original time, older than
                # the memories stored before it in this space
                gap = abs(at - prev_at)
                weight = ls.temporal_weight * math.exp2(-gap / ls.temporal_half_life_s)
                if n >= ls.temporal_max or gap > ls.temporal_window_s or weight < _MIN_WEIGHT:
                    break
                links.append((key, prev, weight, TEMPORAL))
            self.recent.append((key, at))
        return links

    def semantic(self, keys: np.ndarray, vectors: np.ndarray, index: VectorIndex) -> list[Found]:
        """Link each memory of a batch to its ``semantic_k`` nearest among the
        memories indexed before it (the index, searched before the batch goes in,
        and the batch's earlier members) with similarity ≥ ``semantic_threshold``.
        Vectorised: per row, the k best of the index's and of the batch's."""
        k, floor = self.settings.semantic_k, self.settings.semantic_threshold
        rows = len(keys)
        if k == 0 or rows == 0:
            return []
        exact = len(index) <= EXACT_SEARCH_BELOW
        # a narrow search: at the default width it cost half an insert (measured)
        # a few more candidates than k, so that ties at the k-th place are settled
        # by key below rather than by whichever the search returned first
        wanted = k + _TIE_SLACK
        old_keys, old_sims = index.search_many(
            vectors, wanted, exact=exact, expansion=max(wanted, _LINK_EXPANSION)
        )
        near_sims, near_keys = _within_batch(index.metric, keys, vectors, min(wanted, rows))
        cand_sims = np.concatenate([old_sims, near_sims], axis=1)
        cand_keys = np.concatenate([old_keys, near_keys], axis=1)
        ok = (cand_sims >= floor) & (cand_sims > 0.0)
        key_list = keys.tolist()
        links: list[Found] = []
        for i, row_ok in enumerate(ok.tolist()):
            if not any(row_ok):
                continue
            found = sorted(
                (-sim, other)
                for sim, other, good in zip(
                    cand_sims[i].tolist(), cand_keys[i].tolist(), row_ok, strict=True
                )
                if good
            )
            links += [(key_list[i], other, -neg, SEMANTIC) for neg, other in found[:k]]
        return _exact_weights(keys, vectors, links, floor, index)


def _within_batch(
    metric: Metric, keys: np.ndarray, vectors: np.ndarray, take: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a batch, the ``take`` most similar of the rows before it
    (similarities, keys; ``-inf`` where there are fewer). Computed
    :data:`_BATCH_ROWS` rows at a time against the rows up to them, so a big
    batch (a catch-up flushed at once) costs ``_BATCH_ROWS × rows`` floats, not
    ``rows²`` (20k rows would need 4.8 GB)."""
    rows = len(keys)
    sims, picked = [], []
    for lo in range(0, rows, _BATCH_ROWS):
        hi = min(rows, lo + _BATCH_ROWS)
        within = pairwise(metric, vectors[lo:hi], vectors[:hi])
        # only earlier members of the batch: column j for row lo + i when j < lo + i
        within[np.arange(hi)[None, :] >= np.arange(lo, hi)[:, None]] = -np.inf
        if hi < take:  # the first block of a batch with few rows: pad with nothing
            within = np.pad(within, ((0, 0), (0, take - hi)), constant_values=-np.inf)
        best = np.argpartition(-within, take - 1, axis=1)[:, :take]
        sims.append(np.take_along_axis(within, best, axis=1))
        picked.append(keys[np.minimum(best, hi - 1)])  # (a padded column is -inf)
    return np.concatenate(sims), np.concatenate(picked)


def _exact_weights(
    keys: np.ndarray, vectors: np.ndarray, links: list[Found], floor: float, index: VectorIndex
) -> list[Found]:
    """The chosen links' weights computed again from the two vectors, the same
    way whichever way they were found: HNSW distances (float32) and the batch's
    pairwise matrix differ in the last digits, and a weight that differs between
    replicas or replays can reorder a memory's strongest links (which spreading
    activation follows). Links under the floor after all are dropped."""
    if not links:
        return links
    rows = {key: row for row, key in enumerate(keys.tolist())}
    old = sorted({b for _, b, _, _ in links if b not in rows})
    stored: dict[int, np.ndarray] = {}
    for key, vec in zip(old, index.get_many(old), strict=True):
        assert vec is not None, "a search result has a vector"
        stored[key] = vec
    a = vectors[[rows[x] for x, _, _, _ in links]]
    b = np.stack([vectors[rows[y]] if y in rows else stored[y] for _, y, _, _ in links])
    weights = row_similarities(index.metric, a, b).tolist()
    return [
        (x, y, min(w, 1.0), kind)
        for (x, y, _, kind), w in zip(links, weights, strict=True)
        if w >= floor and w > 0.0
    ]
