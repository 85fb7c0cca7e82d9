"""The snapshot format: one space's folded state as bytes, and back.

A snapshot is what a worker needs to serve a space again without replaying its
WAL: the live records, the association graph, the usearch index and the position
(the last applied stream sequence). Layout::

    b"ENGRAM-SNAPSHOT\\n"            16 bytes, magic
    header length                    8 bytes, little-endian
    header SHA-256                   32 bytes
    header                           JSON, see :class:`SnapshotHeader`
    sections                         back to back, in the header's order

The header has its own SHA-256 and every section carries its length and SHA-256
in the header, so a single flipped bit anywhere, or a truncated snapshot, is
refused before any of it is used (a damaged usearch buffer must never reach
``Index.restore``). Only live memories are written, and the
index is scrubbed first: a forgotten memory is in no snapshot written after it
was forgotten.

Format 4 (binary, columnar): one section per column, named by the column, its
encoding in the section's ``dtype``:

- a numpy dtype string (``<i8``, ``<f8``, ``|u1``, ``|b1``): the column as a
  little-endian array, read back without a copy;
- ``utf8[]``: a list of strings as ``n`` (int64), ``n + 1`` int64 byte offsets
  and one UTF-8 blob;
- ``json``: a small or sparse column (kind tables, tags, metadata) as JSON;
- ``bytes``: the usearch index as it is (the section named ``index``).

Which columns a snapshot holds is :mod:`engram_worker.core.persistence`'s
business. Format 3 (records as one JSON object of columns, then the index) is
still read: :func:`decode` gives its columns as JSON values, and the persistence
layer converts them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

MAGIC = b"ENGRAM-SNAPSHOT\n"
FORMAT = 4  # 4: binary columns; 3: records as JSON columns (still read)
READABLE = frozenset({3, FORMAT})
_LEN = 8
_SHA = 32
STRINGS = "utf8[]"
JSON = "json"
BYTES = "bytes"
INDEX = "index"
#: sections at least this big are hashed on a thread of their own (hashlib
#: releases the GIL): the index and the content blob are checked side by side
_PARALLEL_HASH = 1 << 20


class SnapshotInvalid(ValueError):
    """The bytes are not a usable snapshot (damaged, truncated, another space...)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    length: int
    sha256: str
    dtype: str | None = None  # format 4: how the section is encoded (see above)


class SnapshotHeader(BaseModel):
    """What a snapshot says about itself; also mirrored into the object's headers."""

    model_config = ConfigDict(extra="ignore")

    format: int = FORMAT
    space: str
    space_created_at: datetime
    applied_seq: int
    next_key: int
    rejected: int
    memories: int
    dim: int
    metric: str
    index_dtype: str
    embedder: str
    written_at: datetime
    origin: str  # "worker <id>" or "replay"
    erase_pending: list[int] = []  # WAL seqs still to erase (an erase failed)
    sections: list[Section] = []


#: a column as :func:`encode` takes it and :func:`decode` gives it back: an array,
#: a list of strings, or any JSON value (a ``json`` column)
Column = Any


@dataclass(slots=True)
class Snapshot:
    header: SnapshotHeader
    records: dict[str, Column]  # the columns by name (format 3: JSON values)
    index: memoryview


def _strings(values: list[str]) -> bytes:
    blob = "".join(values).encode("utf-8", "surrogatepass")
    offsets = np.zeros(len(values) + 1, dtype="<i8")
    if len(blob) == sum(map(len, values)):  # all ASCII: a char is a byte
        np.cumsum(np.fromiter(map(len, values), np.int64, len(values)), out=offsets[1:])
    else:
        sizes = (len(v.encode("utf-8", "surrogatepass")) for v in values)
        np.cumsum(np.fromiter(sizes, np.int64, len(values)), out=offsets[1:])
    return len(values).to_bytes(8, "little") + offsets.tobytes() + blob


def _read_strings(raw: memoryview) -> list[str]:
    if len(raw) < 8:
        raise SnapshotInvalid("a string column is truncated")
    n = int.from_bytes(raw[:8], "little")
    end = 8 + 8 * (n + 1)
    if n < 0 or end > len(raw):
        raise SnapshotInvalid("a string column is truncated")
    offsets = np.frombuffer(raw[8:end], dtype="<i8")
    blob = bytes(raw[end:])
    if offsets[0] != 0 or offsets[-1] != len(blob) or bool(np.any(np.diff(offsets) < 0)):
        raise SnapshotInvalid("a string column's offsets do not fit its bytes")
    bounds = offsets.tolist()
    try:
        if blob.isascii():
            text = blob.decode("ascii")
            return [text[a:b] for a, b in pairwise(bounds)]
        return [blob[a:b].decode("utf-8", "surrogatepass") for a, b in pairwise(bounds)]
    except UnicodeDecodeError as exc:
        raise SnapshotInvalid(f"a string column is not UTF-8: {exc}") from None


def _section(name: str, value: Column) -> tuple[str, bytes | bytearray | memoryview]:
    """How a column is written: its encoding and its bytes."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        return arr.dtype.str, arr.tobytes()
    if isinstance(value, list) and all(isinstance(v, str) for v in value) and value:
        return STRINGS, _strings(value)
    return JSON, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode(
    header: SnapshotHeader, records: Mapping[str, Column], index: bytes | bytearray
) -> list[bytes | bytearray | memoryview]:
    """The snapshot (format 4) as a list of parts to write back to back (no big
    copies): one section per column of ``records``, then the index."""
    names, dtypes, parts = [], [], []
    for name, col in records.items():
        if name == INDEX:
            raise ValueError(f"a column may not be called {INDEX!r}")
        dtype, raw = _section(name, col)
        names.append(name)
        dtypes.append(dtype)
        parts.append(raw)
    names.append(INDEX)
    dtypes.append(BYTES)
    parts.append(index)
    header.sections = [
        Section(name=n, length=len(memoryview(p).cast("B")), sha256=d, dtype=t)
        for n, p, d, t in zip(names, parts, _digests(parts), dtypes, strict=True)
    ]
    head = header.model_dump_json().encode()
    return [
        MAGIC,
        len(head).to_bytes(_LEN, "little"),
        hashlib.sha256(head).digest(),
        head,
        *parts,
    ]


def _digests(parts: list[Any]) -> list[str]:
    """The SHA-256 of each part; the big ones on threads, side by side."""

    def digest(part: Any) -> str:
        return hashlib.sha256(part).hexdigest()

    big = [i for i, p in enumerate(parts) if len(memoryview(p).cast("B")) >= _PARALLEL_HASH]
    out = [None if i in big else digest(p) for i, p in enumerate(parts)]
    if big:
        with ThreadPoolExecutor(max_workers=min(2, len(big))) as pool:
            for i, d in zip(big, pool.map(digest, [parts[i] for i in big]), strict=True):
                out[i] = d
    return [str(d) for d in out]


def read_header(data: bytes | bytearray | memoryview) -> tuple[SnapshotHeader, int]:
    """The header and the offset of the first section."""
    view = memoryview(data)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise SnapshotInvalid("not an Engram snapshot (bad magic)")
    start = len(MAGIC) + _LEN + _SHA
    if len(view) < start:
        raise SnapshotInvalid("truncated before the header")
    size = int.from_bytes(view[len(MAGIC) : len(MAGIC) + _LEN], "little")
    if size > len(view) - start:
        raise SnapshotInvalid("truncated header")
    head = bytes(view[start : start + size])
    if hashlib.sha256(head).digest() != bytes(view[len(MAGIC) + _LEN : start]):
        raise SnapshotInvalid("the header fails its checksum")
    try:
        header = SnapshotHeader.model_validate_json(head)
    except ValidationError as exc:
        raise SnapshotInvalid(f"unreadable header: {exc.errors()[0]['msg']}") from None
    if header.format not in READABLE:
        raise SnapshotInvalid(
            f"snapshot format {header.format}; this worker reads {sorted(READABLE)}"
        )
    return header, start + size


def decode(data: bytes | bytearray | memoryview) -> Snapshot:
    """Check every section against its checksum and split the snapshot up (array
    columns are read-only views of ``data``)."""
    view = memoryview(data)
    header, offset = read_header(view)
    parts: dict[str, memoryview] = {}
    for section in header.sections:
        part = view[offset : offset + section.length]
        if len(part) != section.length:
            raise SnapshotInvalid(f"section {section.name!r} is truncated")
        if section.name in parts:
            raise SnapshotInvalid(f"section {section.name!r} appears twice")
        parts[section.name] = part
        offset += section.length
    if offset != len(view):
        raise SnapshotInvalid(f"{len(view) - offset} unexpected bytes after the last section")
    names = [s.name for s in header.sections]
    for section, digest in zip(header.sections, _digests([parts[n] for n in names]), strict=True):
        if digest != section.sha256:
            raise SnapshotInvalid(f"section {section.name!r} fails its checksum")
    if header.format == 3:
        return _decode_v3(header, parts)
    if INDEX not in parts:
        raise SnapshotInvalid("missing sections: index")
    records: dict[str, Column] = {}
    for section in header.sections:
        if section.name != INDEX:
            records[section.name] = _column(section, parts[section.name])
    return Snapshot(header=header, records=records, index=parts[INDEX])


def _column(section: Section, raw: memoryview) -> Column:
    if section.dtype == STRINGS:
        return _read_strings(raw)
    if section.dtype == JSON:
        try:
            return json.loads(bytes(raw))
        except ValueError as exc:
            raise SnapshotInvalid(f"column {section.name!r} is not JSON: {exc}") from None
    try:
        dtype = np.dtype(section.dtype or "")
    except TypeError:
        raise SnapshotInvalid(f"column {section.name!r} has no known encoding") from None
    if dtype.kind not in "iufb" or dtype.byteorder == ">" or len(raw) % dtype.itemsize:
        raise SnapshotInvalid(f"column {section.name!r} is not a {section.dtype} array")
    return np.frombuffer(raw, dtype=dtype)


def _decode_v3(header: SnapshotHeader, parts: dict[str, memoryview]) -> Snapshot:
    missing = {"records", INDEX} - parts.keys()
    if missing:
        raise SnapshotInvalid(f"missing sections: {', '.join(sorted(missing))}")
    try:
        records = json.loads(bytes(parts["records"]))
    except ValueError as exc:
        raise SnapshotInvalid(f"records are not JSON: {exc}") from None
    if not isinstance(records, dict):
        raise SnapshotInvalid("records are not a JSON object")
    return Snapshot(header=header, records=records, index=parts[INDEX])
