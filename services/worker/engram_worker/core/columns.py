"""Typed columns for snapshots: times as int64 microseconds, string lists, codes
into a small table, sparse per-row values; and reading a format 3 (JSON) snapshot's
records into the same columns.

Pure helpers for :mod:`engram_worker.core.persistence`; every reader raises
:class:`SnapshotInvalid` on a value it cannot use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from itertools import repeat
from typing import Any

import numpy as np

from engram_worker.core.snapshot import SnapshotInvalid

#: ``last_recall`` of a memory never recalled
NO_TIME = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
# below 2**32 s a float64 holds a time to better than half a microsecond, so
# ``fromtimestamp`` (C, fast) gives back the exact microsecond
_FAST_LIMIT = 2**32 * 10**6
_from_ts = partial(datetime.fromtimestamp, tz=UTC)

#: rows made at once where a restore makes an object per row: one C loop over
#: 100k rows holds the GIL for tens of milliseconds, which stalls an event loop
#: receiving the snapshot's next chunks beside it (engram_worker.snapshot_restore)
SLICE = 8192

#: a time that is not plain UTC, to give back exactly: (column, row, UTC offset in
#: seconds, or ``None`` for a time without a zone)
Zone = tuple[str, int, int | None]


def micros(name: str, values: Sequence[datetime | None], zones: list[Zone]) -> np.ndarray:
    """Times as int64 microseconds since the epoch (``None``: :data:`NO_TIME`); a
    time with another UTC offset, or none, is noted in ``zones``."""
    out = np.empty(len(values), dtype=np.int64)
    for row, when in enumerate(values):
        if when is None:
            out[row] = NO_TIME
            continue
        zone = when.tzinfo
        if zone is None:
            out[row] = (when - _NAIVE_EPOCH) // _US
            zones.append((name, row, None))
            continue
        out[row] = (when - _EPOCH) // _US
        if zone is not UTC:
            offset = when.utcoffset()
            if offset:
                zones.append((name, row, int(offset.total_seconds())))
    return out


def datetimes(
    name: str,
    us: np.ndarray,
    zones: dict[tuple[str, int], int | None],
    like: tuple[np.ndarray, list[datetime | None]] | None = None,
) -> list[datetime | None]:
    """The times back from :func:`micros` (with their zones). ``like``: another
    column's microseconds and times; where this one holds the same plain UTC time,
    the other's object is shared (as the fold shares ``occurred_at`` and
    ``created_at`` when no time was given), not made again."""
    out: list[datetime | None]
    if like is not None and len(like[0]) == len(us):
        same = us == like[0]
        for _, row in zones:  # a time with a zone is made as it was given
            same[row] = False
        out = list(like[1])
        rows = np.flatnonzero(~same)
        for row, when in zip(rows.tolist(), _plain(name, us[rows]), strict=True):
            out[row] = when
    else:
        out = _plain(name, us)
    for (col, row), offset in zones.items():
        if col == name:
            when = out[row]
            if when is not None:
                if offset is None:
                    out[row] = when.replace(tzinfo=None)
                else:
                    out[row] = when.astimezone(timezone(timedelta(seconds=offset)))
    return out


def _plain(name: str, us: np.ndarray) -> list[datetime | None]:
    """UTC datetimes of microseconds since the epoch (:data:`NO_TIME`: ``None``;
    only the rows that have a time are converted)."""
    missing = us == NO_TIME
    some = bool(missing.any())
    have = us[~missing] if some else us
    fast = not len(have) or bool(np.abs(have).max() < _FAST_LIMIT)
    try:
        if fast:
            secs = (have / 1e6).tolist()
            made: list[datetime] = []
            for lo in range(0, len(secs), SLICE):  # see SLICE
                made += map(_from_ts, secs[lo : lo + SLICE])
        else:
            made = [_EPOCH + timedelta(microseconds=u) for u in have.tolist()]
    except (OverflowError, ValueError, OSError) as exc:
        raise SnapshotInvalid(f"unreadable record: {name} {exc}") from None
    if not some:
        return list[datetime | None](made)
    out: list[datetime | None] = [None] * len(us)
    for row, when in zip(np.flatnonzero(~missing).tolist(), made, strict=True):
        out[row] = when
    return out


def read_zones(value: Any, rows: int, names: Iterable[str]) -> dict[tuple[str, int], int | None]:
    known = set(names)
    out: dict[tuple[str, int], int | None] = {}
    try:
        for name, row, offset in value:
            if name not in known or not 0 <= row < rows or not isinstance(row, int):
                raise ValueError(f"zone of {name!r} row {row!r}")
            if offset is not None and (not isinstance(offset, int) or abs(offset) >= 86400):
                raise ValueError(f"UTC offset {offset!r}")
            out[(name, row)] = offset
    except (TypeError, ValueError) as exc:
        raise SnapshotInvalid(f"unreadable record: zones {exc}") from None
    return out


def array(cols: dict[str, Any], name: str, kinds: str, dtype: Any) -> np.ndarray:
    """A numeric column as an array of ``dtype`` (given as an array, or as a JSON
    list whose values numpy reads as one of ``kinds``)."""
    try:
        value = cols[name]
    except KeyError:
        raise SnapshotInvalid(f"records lack the column {name!r}") from None
    try:
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SnapshotInvalid(f"unreadable record: {name} {exc}") from None
    if arr.size == 0:
        return np.zeros(0, dtype=dtype)
    if arr.ndim != 1 or arr.dtype.kind not in kinds:
        raise SnapshotInvalid(f"unreadable record: {name} holds {arr.dtype} values")
    return arr.astype(dtype, copy=False)


def strings(cols: dict[str, Any], name: str) -> list[str]:
    try:
        value = cols[name]
    except KeyError:
        raise SnapshotInvalid(f"records lack the column {name!r}") from None
    # map and all in C: a Python generator here cost 30 ms per 100k strings
    if not isinstance(value, list) or not all(map(isinstance, value, repeat(str))):
        raise SnapshotInvalid(f"unreadable record: {name} is not a list of strings")
    return value


def codes(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Strings as uint8 codes into a table (in order of first use)."""
    table: dict[str, int] = {}
    out = np.fromiter((table.setdefault(v, len(table)) for v in values), np.uint8, len(values))
    if len(table) > 255:
        raise ValueError("more than 255 distinct kinds")
    return out, list(table)


def decoded(
    cols: dict[str, Any], name: str, allowed: Callable[[Any], bool] = lambda v: True
) -> list[Any]:
    """A coded column back to its strings (``name`` codes, ``name.table``)."""
    code = array(cols, name, "iu", np.int64)
    table = cols.get(f"{name}.table")
    if not isinstance(table, list) or not all(isinstance(t, str) and allowed(t) for t in table):
        raise SnapshotInvalid(f"unreadable record: {name} table {table!r}")
    if len(code) and (code.min() < 0 or code.max() >= len(table)):
        raise SnapshotInvalid(f"unreadable record: {name} code beyond its table")
    values: list[Any] = np.array(table, dtype=object)[code].tolist() if table else []
    return values


def sparse(
    cols: dict[str, Any], name: str, rows: int, check: Callable[[Any], Any]
) -> dict[int, Any]:
    """``name.row`` / ``name.value``: the rows that have a value, and the values."""
    index = array(cols, f"{name}.row", "iu", np.int64)
    if f"{name}.value" not in cols:
        raise SnapshotInvalid(f"records lack the column '{name}.value'")
    values = cols[f"{name}.value"]
    if not isinstance(values, list) or len(values) != len(index):
        raise SnapshotInvalid(f"unreadable record: {name} rows and values differ")
    if len(index) and (index[0] < 0 or index[-1] >= rows or bool(np.any(np.diff(index) <= 0))):
        raise SnapshotInvalid(f"unreadable record: {name} rows out of order or range")
    try:
        return {row: check(v) for row, v in zip(index.tolist(), values, strict=True)}
    except (TypeError, ValueError) as exc:
        raise SnapshotInvalid(f"unreadable record: {name} {exc}") from None


def tag_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise ValueError(f"tags {value!r}")
    return value


def metadata_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"metadata {value!r}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"metadata {value!r}")
    return value
