"""The association graph in arrays: the frozen adjacency (CSR) that
:class:`~engram_worker.core.graph.AssociationGraph` keeps most of its edges in,
and the vectorised work around it — building it from a snapshot's edges,
merging the recent changes into it (compaction), listing its edges in order.

Row ``k`` of an :class:`Adjacency` is memory ``k``'s neighbours (rows are the
index keys themselves, so a lookup is two array reads): ``nbr[ptr[k]:ptr[k+1]]``
by falling weight, ties by key, with their weights (float64: exactly the
weights linked) and a one-byte code into a table of ``(kind, explicit)``. An
undirected edge is stored in both rows. Nothing here makes a Python object per
edge. Pure: numpy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MAX_KEY = 2**31 - 1  # neighbours are stored as int32
MAX_CODES = 256  # (kind, explicit) pairs one graph holds at a time: a uint8 code
_SHIFT = np.int64(31)  # pair code = a << 31 | b, unique for keys up to MAX_KEY

Code = tuple[str, bool]  # (kind, explicit)


class GraphInvalid(ValueError):
    """Edges that cannot belong to a graph (from a damaged or foreign snapshot)."""


class GraphArrays(NamedTuple):
    """Every edge once, in :meth:`AssociationGraph.edges` order: ``a < b`` by
    ``(a, b)``, a derived edge covered by an explicit one right after it."""

    a: np.ndarray  # int64
    b: np.ndarray  # int64
    weight: np.ndarray  # float64
    kind: np.ndarray  # uint8 codes into kinds
    kinds: tuple[str, ...]
    explicit: np.ndarray  # bool


class Adjacency:
    """Effective edges in both directions, by row (see the module doc). Frozen
    but for one thing: a row built unsorted (:func:`from_pairs`, a snapshot:
    sorting every row on load would cost more than the load) is sorted in place
    the first time its neighbours are read, and ``ordered`` says which are.
    ``codes`` is shared with the graph, which only appends to it between merges."""

    __slots__ = (
        "_code",
        "_nbr",
        "_ordered",
        "_ptr",
        "_rows",
        "_w",
        "code",
        "codes",
        "entries",
        "names",
        "nbr",
        "ordered",
        "ptr",
        "w",
    )

    def __init__(
        self,
        ptr: np.ndarray,
        nbr: np.ndarray,
        w: np.ndarray,
        code: np.ndarray,
        codes: list[Code],
        ordered: np.ndarray | None = None,
    ) -> None:
        self.ptr, self.nbr, self.w, self.code, self.codes = ptr, nbr, w, code, codes
        self.ordered = np.ones(len(ptr) - 1, bool) if ordered is None else ordered
        self.names = [kind for kind, _ in codes]  # kind by code, for neighbours()
        self.entries = len(nbr)
        self._rows = len(ptr) - 1
        # memoryviews: slicing them and reading one item is a few times cheaper
        # than numpy's scalar machinery, and neighbours() is on the recall path
        self._ptr, self._nbr = ptr.data, nbr.data
        self._w, self._code = w.data, code.data
        self._ordered = self.ordered.data

    @classmethod
    def empty(cls, codes: list[Code]) -> Adjacency:
        return cls(
            np.zeros(1, np.int64),
            np.empty(0, np.int32),
            np.empty(0, np.float64),
            np.empty(0, np.uint8),
            codes,
        )

    @property
    def rows(self) -> int:
        return self._rows

    def add(self, code: Code) -> None:
        self.codes.append(code)
        self.names.append(code[0])

    def span(self, key: int) -> tuple[int, int]:
        if 0 <= key < self._rows:
            return self._ptr[key], self._ptr[key + 1]
        return 0, 0

    def neighbours(self, key: int, limit: int | None = None) -> list[tuple[int, float, str]]:
        if not 0 <= key < self._rows:
            return []
        s, e = self._ptr[key], self._ptr[key + 1]
        if s == e:
            return []
        if not self._ordered[key]:
            self._order(key, s, e)
        if limit is not None and e - s > limit:
            e = s + limit
        return list(
            zip(
                self._nbr[s:e].tolist(),
                self._w[s:e].tolist(),
                map(self.names.__getitem__, self._code[s:e]),
                strict=True,
            )
        )

    def _order(self, key: int, s: int, e: int) -> None:
        """Sort row ``key`` by falling weight, ties by neighbour, in place."""
        nbr, w, code = self.nbr[s:e], self.w[s:e], self.code[s:e]
        order = np.lexsort((nbr, -w))
        nbr[:], w[:], code[:] = nbr[order], w[order], code[order]
        self.ordered[key] = True

    def keys(self, key: int) -> list[int]:
        s, e = self.span(key)
        return self._nbr[s:e].tolist()

    def edge(self, a: int, b: int) -> tuple[float, str, bool] | None:
        s, e = self.span(a)
        if s == e:
            return None
        try:
            i = s + self._nbr[s:e].tolist().index(b)
        except ValueError:
            return None
        kind, explicit = self.codes[self._code[i]]
        return self._w[i], kind, explicit


# -- sorting rows -------------------------------------------------------------------


def group(rows: np.ndarray, n_rows: int) -> np.ndarray:
    """The stable permutation that groups ``rows`` (ints in [0, n_rows)) in row
    order: an LSD radix sort over 16-bit digits (numpy radix-sorts uint16), O(n)."""
    perm = np.argsort((rows & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while (n_rows - 1) >> shift:
        digit = ((rows[perm] >> shift) & 0xFFFF).astype(np.uint16)
        perm = perm[np.argsort(digit, kind="stable")]
        shift += 16
    return perm


def row_order(ptr: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The permutation that sorts each row's entries by ``key`` (ints, distinct
    within a row). Rows are sorted together, padded to the next power of two of
    their length: a few vectorised passes, not a Python call per row."""
    lens = np.diff(ptr)
    perm = np.arange(len(key))
    width, longest = 1, int(lens.max(initial=0))
    while width < longest:
        rows = np.flatnonzero((lens > width) & (lens <= 2 * width))
        width *= 2
        if not len(rows):
            continue
        cols = np.arange(width)
        start = ptr[rows][:, None]
        valid = cols < lens[rows][:, None]
        at = np.where(valid, start + cols, start)
        order = np.argsort(np.where(valid, key[at], np.iinfo(np.int64).max), axis=1)
        perm[(start + cols)[valid]] = np.take_along_axis(at, order, axis=1)[valid]
    return perm


def from_pairs(
    a: np.ndarray, b: np.ndarray, w: np.ndarray, code: np.ndarray, codes: list[Code]
) -> Adjacency:
    """The adjacency of edges ``a < b`` given sorted by ``(a, b)``: each edge goes
    in row ``a`` and in row ``b``. Only the ``b`` side needs grouping (radix,
    O(E)). Rows come out by neighbour, and are sorted by weight when first read."""
    if not len(a):
        return Adjacency.empty(codes)
    n_rows = int(b.max()) + 1
    ca = np.bincount(a, minlength=n_rows)
    cb = np.bincount(b, minlength=n_rows)
    ptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(ca + cb, out=ptr[1:])
    n = len(a)
    nbr = np.empty(2 * n, np.int32)
    ws = np.empty(2 * n, np.float64)
    cs = np.empty(2 * n, np.uint8)
    at = np.arange(n)
    # in row b (neighbour a); an entry's place is its rank among the b's
    p = group(b, n_rows)
    dst = at + (ptr[:-1] - (np.cumsum(cb) - cb))[b[p]]
    nbr[dst], ws[dst], cs[dst] = a[p], w[p], code[p]
    # in row a (neighbour b), after those: a is sorted, so its rank is its place
    dst = at + (ptr[:-1] + cb - (np.cumsum(ca) - ca))[a]
    nbr[dst], ws[dst], cs[dst] = b, w, code
    return Adjacency(ptr, nbr, ws, cs, codes, ordered=(ca + cb) <= 1)


def merge(
    base: Adjacency,
    rows: np.ndarray,
    nbr: np.ndarray,
    w: np.ndarray,
    code: np.ndarray,
    dropped: np.ndarray,
) -> Adjacency:
    """``base`` without the entries at ``dropped`` (positions) and with the
    entries ``(rows, nbr, w, code)`` added (each row's together). O(E) masked
    copies, no index array as long as the graph; a changed row is sorted again
    when it is next read."""
    n_rows = max(base.rows, int(rows.max(initial=-1)) + 1)
    lens = np.zeros(n_rows, np.int64)
    lens[: base.rows] = np.diff(base.ptr)
    kept = lens - np.bincount(
        np.searchsorted(base.ptr, dropped, side="right") - 1, minlength=n_rows
    )
    added = np.bincount(rows, minlength=n_rows)
    new_lens = kept + added
    ptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(new_lens, out=ptr[1:])
    # the added entries go after what each row keeps, in the order given
    run = np.flatnonzero(np.diff(rows, prepend=-1))
    rank = np.arange(len(rows)) - np.repeat(run, np.diff(run, append=len(rows)))
    dst = ptr[rows] + kept[rows] + rank
    slot = np.ones(ptr[-1], bool)
    slot[dst] = False
    keep = None
    if len(dropped):
        keep = np.ones(base.entries, bool)
        keep[dropped] = False
    out = []
    for old, new in ((base.nbr, nbr), (base.w, w), (base.code, code)):
        arr = np.empty(ptr[-1], old.dtype)
        arr[slot] = old if keep is None else old[keep]
        arr[dst] = new
        out.append(arr)
    ordered = np.ones(n_rows, bool)
    ordered[: base.rows] = base.ordered
    touched = (added > 0) | (kept != lens)
    ordered[touched] = new_lens[touched] <= 1
    return Adjacency(ptr, out[0], out[1], out[2], base.codes, ordered)


def recode(base: Adjacency) -> Adjacency:
    """``base`` with the codes no entry uses dropped from its table."""
    used = np.flatnonzero(np.bincount(base.code, minlength=len(base.codes)))
    lut = np.zeros(max(len(base.codes), 1), np.uint8)
    lut[used] = np.arange(len(used))
    codes = [base.codes[c] for c in used.tolist()]
    return Adjacency(base.ptr, base.nbr, base.w, lut[base.code], codes, base.ordered)


# -- edges in order, and back --------------------------------------------------------


def edge_arrays(base: Adjacency, shadow: dict[tuple[int, int], tuple[float, str]]) -> GraphArrays:
    """Every edge once (see :class:`GraphArrays`); ``shadow`` holds the derived
    edges covered by explicit ones."""
    row_of = np.repeat(np.arange(base.rows), np.diff(base.ptr))
    fwd = np.flatnonzero(base.nbr > row_of)
    a, b = row_of[fwd], base.nbr[fwd].astype(np.int64)
    sub_ptr = np.zeros(base.rows + 1, np.int64)
    np.cumsum(np.bincount(a, minlength=base.rows), out=sub_ptr[1:])
    perm = row_order(sub_ptr, b)
    a, b, fwd = a[perm], b[perm], fwd[perm]
    weight, code = base.w[fwd], base.code[fwd]
    names = sorted(
        {base.codes[c][0] for c in np.flatnonzero(np.bincount(code, minlength=1)).tolist()}
        | {kind for _, kind in shadow.values()}
    )
    index = {name: i for i, name in enumerate(names)}
    kind_of = np.array([index.get(k, 0) for k, _ in base.codes] or [0], np.uint8)
    explicit_of = np.array([x for _, x in base.codes] or [False], bool)
    kind, explicit = kind_of[code], explicit_of[code]
    if shadow:
        pairs = sorted(shadow)
        sa = np.array([p[0] for p in pairs], np.int64)
        sb = np.array([p[1] for p in pairs], np.int64)
        at = np.searchsorted((a << _SHIFT) | b, (sa << _SHIFT) | sb) + 1
        a, b = np.insert(a, at, sa), np.insert(b, at, sb)
        weight = np.insert(weight, at, [shadow[p][0] for p in pairs])
        kind = np.insert(kind, at, [index[shadow[p][1]] for p in pairs])
        explicit = np.insert(explicit, at, False)
    return GraphArrays(a, b, weight, kind, tuple(names), explicit)


def checked(
    arrays: GraphArrays, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The snapshot's edges in :class:`GraphArrays` order, checked: the columns as
    numpy arrays of the right types, ``(a, b, weight, kind, explicit, shadow)``
    where ``shadow`` marks the derived edges covered by an explicit one. Raises
    :class:`GraphInvalid`, naming the first bad edge."""
    try:
        a, b, weight, kind, kinds, explicit = arrays
        cols = [np.asarray(c) for c in (a, b, weight, kind, explicit)]
        keys = np.asarray(keys)
    except (TypeError, ValueError):
        raise GraphInvalid("edges lack a column") from None
    a, b, weight, kind, explicit = cols
    if not (
        a.dtype.kind in "iu"
        and b.dtype.kind in "iu"
        and weight.dtype.kind in "iuf"
        and kind.dtype.kind in "iu"
        and explicit.dtype.kind == "b"
        and keys.ndim == 1
        and keys.dtype.kind in "iu"
        and isinstance(kinds, tuple | list)
    ):
        raise GraphInvalid("unreadable edge: a column of the wrong type")
    if any(c.ndim != 1 for c in cols) or len({len(c) for c in cols}) > 1:
        raise GraphInvalid("edge columns differ in length")
    a, b = a.astype(np.int64, copy=False), b.astype(np.int64, copy=False)
    weight = weight.astype(np.float64, copy=False)
    keys = keys[(keys >= 0) & (keys <= MAX_KEY)].astype(np.int64)
    live = np.zeros(int(keys.max(initial=-1)) + 1, bool)
    live[keys] = True
    joined = (a >= 0) & (a < b) & (b < len(live))
    if joined.all():
        joined = live[a] & live[b]
    else:
        joined[joined] = live[a[joined]] & live[b[joined]]
    _first_bad(~joined, a, b, "does not join two live memories")
    named = np.array([isinstance(k, str) and bool(k) for k in kinds] + [False])
    known = (kind >= 0) & (kind < len(kinds))
    known[known] = named[kind[known]]
    _first_bad(~known, a, b, "has no kind")
    bad = ~((weight > 0.0) & (weight <= 1.0))
    if bad.any():
        raise GraphInvalid(f"unreadable edge: edge weight {weight[bad][0]!r} is outside (0, 1]")
    pair = (a << _SHIFT) | b
    step = np.diff(pair)
    if (step < 0).any() or ((step == 0) & ~explicit[:-1] & explicit[1:]).any():
        order = np.lexsort((~explicit, pair))  # not in edges() order: sort it
        a, b, weight, kind, explicit, pair = (
            c[order] for c in (a, b, weight, kind, explicit, pair)
        )
        step = np.diff(pair)
    same = step == 0
    _first_bad(np.append(same & (explicit[:-1] == explicit[1:]), False), a, b, "appears twice")
    shadow = np.insert(same, 0, False)
    return a, b, weight, kind.astype(np.int64), explicit, shadow


def _first_bad(bad: np.ndarray, a: np.ndarray, b: np.ndarray, what: str) -> None:
    if bad.any():
        i = int(np.argmax(bad))
        raise GraphInvalid(f"edge {int(a[i])}–{int(b[i])} {what}")
