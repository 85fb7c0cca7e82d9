"""The live memories of one space and the indexes over them: by id, by index key,
by stream seq (paging in stream order), by tag, and by ``occurred_at`` (built by
the first time-filtered recall, kept up to date after it)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from datetime import datetime

import msgspec

from engram_contract.messages import as_utc

# Most memories have neither tags nor metadata: one shared empty list and dict
# instead of 200 000 containers the cyclic GC would walk in a 100k space (10 % of
# the fold, measured). Never mutated: records are replaced, not edited.
NO_TAGS: list[str] = []
NO_METADATA: dict[str, str] = {}


def epoch(when: datetime) -> float:
    """Seconds since the epoch (a datetime without a zone is UTC)."""
    return as_utc(when).timestamp()


class StoredMemory(msgspec.Struct, gc=False):
    """One live memory. (A msgspec struct: cheaper to make than a dataclass, and
    not tracked by the cyclic GC, which a space of 100k records would otherwise
    make walk them all on every full collection.) Its fields are the columns of a
    snapshot (:mod:`engram_worker.core.persistence`)."""

    id: str
    key: int
    seq: int
    command_id: str
    content: str
    confidence: float
    tags: list[str]
    metadata: dict[str, str]
    occurred_at: datetime
    created_at: datetime
    kind: str = "episodic"  # "semantic": made by consolidation
    recalls: int = 0  # times recall returned it (reinforcement)
    last_recall: datetime | None = None


class Records:
    """The live records and their indexes. Keys (the vector index's) are handed out
    from 1 upwards and never reused; seqs only grow, so the seq list stays sorted."""

    def __init__(self) -> None:
        self.by_id: dict[str, StoredMemory] = {}
        self.by_key: dict[int, StoredMemory] = {}
        self.seqs: list[int] = []  # sorted seqs of live records, for paging
        self.by_seq: dict[int, str] = {}
        self.next_key = 1
        self.tagged: dict[str, set[int]] = {}  # tag → keys
        self.when: list[tuple[float, int]] | None = None  # (occurred_at, key), sorted

    def __len__(self) -> int:
        return len(self.by_id)

    def new_key(self) -> int:
        key = self.next_key
        self.next_key += 1
        return key

    def add(self, rec: StoredMemory) -> None:
        self.by_id[rec.id] = rec
        self.by_key[rec.key] = rec
        self.seqs.append(rec.seq)  # seqs only grow, so the list stays sorted
        self.by_seq[rec.seq] = rec.id
        if rec.tags or self.when is not None:
            self._index_filters(rec)

    def _index_filters(self, rec: StoredMemory) -> None:
        for tag in rec.tags:
            self.tagged.setdefault(tag, set()).add(rec.key)
        when = self.when
        if when is not None:
            at = epoch(rec.occurred_at)
            # keys only grow: (at, key) sorts last when ``at`` does, the usual case
            if not when or when[-1][0] <= at:
                when.append((at, rec.key))
            else:
                bisect.insort(when, (at, rec.key))

    def drop(self, memory_id: str) -> StoredMemory | None:
        """Remove a record from every index; the removed record, or ``None``."""
        old = self.by_id.pop(memory_id, None)
        if old is None:
            return None
        del self.by_key[old.key]
        del self.by_seq[old.seq]
        del self.seqs[bisect.bisect_left(self.seqs, old.seq)]
        for tag in old.tags:  # (a tag may be given twice)
            keys = self.tagged.get(tag)
            if keys is not None:
                keys.discard(old.key)
                if not keys:
                    del self.tagged[tag]
        if self.when is not None:
            del self.when[bisect.bisect_left(self.when, (epoch(old.occurred_at), old.key))]
        return old

    def after(self, after_seq: int) -> Iterator[StoredMemory]:
        """Live records in stream order after ``after_seq``."""
        seqs, by_seq, by_id = self.seqs, self.by_seq, self.by_id
        for i in range(bisect.bisect_right(seqs, after_seq), len(seqs)):
            yield by_id[by_seq[seqs[i]]]

    def page(self, after_seq: int, limit: int) -> tuple[list[StoredMemory], int | None]:
        """Live memories in stream order after ``after_seq``; returns the next cursor."""
        i = bisect.bisect_right(self.seqs, after_seq)
        seqs = self.seqs[i : i + limit]
        recs = [self.by_id[self.by_seq[s]] for s in seqs]
        more = i + limit < len(self.seqs)
        return recs, (seqs[-1] if more and seqs else None)

    def matching(
        self, tags: tuple[str, ...], since: float | None, until: float | None
    ) -> set[int] | None:
        """Keys of the memories with every tag in ``tags`` and ``occurred_at`` in
        ``[since, until)`` (seconds since the epoch); ``None``: no filter."""
        if not tags and since is None and until is None:
            return None
        keys: set[int] | None = None
        for tag in sorted(set(tags), key=lambda t: len(self.tagged.get(t, ()))):
            tagged = self.tagged.get(tag)
            if not tagged:
                return set()
            keys = set(tagged) if keys is None else keys & tagged
        if since is None and until is None:
            return keys
        if keys is None:
            if self.when is None:
                self.when = sorted((epoch(r.occurred_at), r.key) for r in self.by_key.values())
            when = self.when
            i = 0 if since is None else bisect.bisect_left(when, (since, -1))
            j = len(when) if until is None else bisect.bisect_left(when, (until, -1))
            return {key for _, key in when[i:j]}
        out = set()
        for key in keys:
            at = epoch(self.by_key[key].occurred_at)
            if (since is None or at >= since) and (until is None or at < until):
                out.add(key)
        return out

    def load(
        self,
        by_id: dict[str, StoredMemory],
        next_key: int,
        indexes: Indexes | None = None,
    ) -> None:
        """Take over restored records (in stream order) and their indexes
        (:func:`indexes`; made here when not given)."""
        assert not self.by_id, "load into empty records"
        self.by_id = by_id
        if indexes is None:
            recs = list(by_id.values())
            indexes = make_indexes(recs, [r.key for r in recs], [r.seq for r in recs], list(by_id))
        self.by_key, self.by_seq, self.seqs, self.tagged = indexes
        self.next_key = next_key


#: by key, id by seq, the sorted seqs, keys by tag (see :class:`Records`)
Indexes = tuple[dict[int, StoredMemory], dict[int, str], list[int], dict[str, set[int]]]


def make_indexes(
    recs: list[StoredMemory], keys: list[int], seqs: list[int], ids: list[str]
) -> Indexes:
    """The indexes of records in stream order, given their keys, seqs and ids
    as lists (a restore has them: no attribute read per record)."""
    tagged: dict[str, set[int]] = {}
    for rec in recs:
        for tag in rec.tags:
            tagged.setdefault(tag, set()).add(rec.key)
    return dict(zip(keys, recs, strict=True)), dict(zip(seqs, ids, strict=True)), seqs, tagged
