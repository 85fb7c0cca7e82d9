"""The snapshot format: one space's folded state as bytes, and back.

A snapshot is what a worker needs to serve a space again without replaying its
WAL: the live records, the usearch index and the position (the last applied
stream sequence). Layout::

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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

MAGIC = b"ENGRAM-SNAPSHOT\n"
FORMAT = 3  # 3: records carry kind/recalls/last_recall, and the graph's edges
_LEN = 8
_SHA = 32


class SnapshotInvalid(ValueError):
    """The bytes are not a usable snapshot (damaged, truncated, another space...)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    length: int
    sha256: str


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


@dataclass(slots=True)
class Snapshot:
    header: SnapshotHeader
    records: dict[str, list[Any]]
    index: memoryview


def encode(
    header: SnapshotHeader, records: dict[str, list[Any]], index: bytes | bytearray
) -> list[bytes | bytearray]:
    """The snapshot as a list of parts to write back to back (no big copies)."""
    # one dumps per column: the encoder holds the GIL, so keep each call short
    body = (
        "{"
        + ",".join(
            f"{json.dumps(name)}:{json.dumps(col, separators=(',', ':'), ensure_ascii=False)}"
            for name, col in records.items()
        )
        + "}"
    ).encode()
    header.sections = [
        Section(name="records", length=len(body), sha256=hashlib.sha256(body).hexdigest()),
        Section(name="index", length=len(index), sha256=hashlib.sha256(index).hexdigest()),
    ]
    head = header.model_dump_json().encode()
    return [
        MAGIC,
        len(head).to_bytes(_LEN, "little"),
        hashlib.sha256(head).digest(),
        head,
        body,
        index,
    ]


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
    if header.format != FORMAT:
        raise SnapshotInvalid(f"snapshot format {header.format}; this worker reads {FORMAT}")
    return header, start + size


def decode(data: bytes | bytearray | memoryview) -> Snapshot:
    """Check every section against its checksum and split the snapshot up."""
    view = memoryview(data)
    header, offset = read_header(view)
    parts: dict[str, memoryview] = {}
    for section in header.sections:
        part = view[offset : offset + section.length]
        if len(part) != section.length:
            raise SnapshotInvalid(f"section {section.name!r} is truncated")
        if hashlib.sha256(part).hexdigest() != section.sha256:
            raise SnapshotInvalid(f"section {section.name!r} fails its checksum")
        parts[section.name] = part
        offset += section.length
    if offset != len(view):
        raise SnapshotInvalid(f"{len(view) - offset} unexpected bytes after the last section")
    missing = {"records", "index"} - parts.keys()
    if missing:
        raise SnapshotInvalid(f"missing sections: {', '.join(sorted(missing))}")
    try:
        records = json.loads(bytes(parts["records"]))
    except ValueError as exc:
        raise SnapshotInvalid(f"records are not JSON: {exc}") from None
    if not isinstance(records, dict):
        raise SnapshotInvalid("records are not a JSON object")
    return Snapshot(header=header, records=records, index=parts["index"])


def columns(records: dict[str, list[Any]], names: Sequence[str]) -> list[list[Any]]:
    """The named columns, all of one length, or :class:`SnapshotInvalid`."""
    try:
        cols = [records[name] for name in names]
    except KeyError as exc:
        raise SnapshotInvalid(f"records lack the column {exc.args[0]!r}") from None
    lengths = {len(c) for c in cols}
    if len(lengths) > 1:
        raise SnapshotInvalid("record columns differ in length")
    return cols
