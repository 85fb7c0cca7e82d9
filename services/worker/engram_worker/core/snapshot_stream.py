"""Reading a snapshot (:mod:`.snapshot`'s layout) as its bytes arrive, in order.

:class:`SectionReader` takes the object's bytes chunk by chunk: it checks the
magic as soon as it has it, the header once it is whole (with its SHA-256, and
that its sections add up to exactly the object's size), then copies each
section into a buffer of its own while hashing it, and hands a section out only
once all of it is there and its SHA-256 matches the header's. So a section can
be decoded while the next ones are still on their way, and no byte is used
before it is checked; a damaged, truncated or overlong snapshot is refused as
:func:`.snapshot.decode` refuses it (:class:`~.snapshot.SnapshotInvalid`).

Every byte of a snapshot is covered by the format's own checks (the magic, the
header's SHA-256, each section's SHA-256, the sizes), so this is the only pass
over the bytes: the Object Store's digest of the whole object, which would be a
second SHA-256 over the same bytes, is not needed to trust them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from engram_worker.core.snapshot import (
    _LEN,
    _SHA,
    INDEX,
    MAGIC,
    Section,
    SnapshotHeader,
    SnapshotInvalid,
    read_header,
)

_PREFIX = len(MAGIC) + _LEN + _SHA  # magic, header length, header SHA-256


class SectionReader:
    """A snapshot of ``size`` bytes, fed in order (:meth:`feed`), ends with
    :meth:`end`. Not thread-safe: feed it from one thread."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.header: SnapshotHeader | None = None
        self._head = bytearray()  # until the header is whole
        self._got = 0  # bytes fed
        self._sections: list[Section] = []
        self._at = 0  # the section being filled
        self._buf = bytearray()
        self._fill = 0
        self._hash = hashlib.sha256()

    @property
    def done(self) -> bool:
        """Every section has been handed out."""
        return self.header is not None and self._at == len(self._sections)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[tuple[Section, memoryview]]:
        """Take the next bytes; the sections this completes (checked), each with
        its bytes (a buffer of its own). Raises :class:`SnapshotInvalid`."""
        return list(self._feed(chunk))

    def _feed(self, chunk: bytes | bytearray | memoryview) -> Iterator[tuple[Section, memoryview]]:
        view = memoryview(chunk).cast("B")
        self._got += len(view)
        if self._got > self.size:
            raise SnapshotInvalid(f"more than the {self.size} bytes announced")
        if self.header is None:
            view = self._take_header(view)
            if self.header is None:
                return
            yield from self._empty_sections()
        while len(view) and self._at < len(self._sections):
            section = self._sections[self._at]
            take = min(len(view), section.length - self._fill)
            piece = view[:take]
            self._buf[self._fill : self._fill + take] = piece
            self._hash.update(piece)
            self._fill += take
            view = view[take:]
            if self._fill == section.length:
                yield self._complete(section)
                yield from self._empty_sections()
        if len(view):
            raise SnapshotInvalid(f"{len(view)} unexpected bytes after the last section")

    def end(self) -> None:
        """No more bytes: raises :class:`SnapshotInvalid` unless all of it came."""
        if self._got != self.size or not self.done:
            raise SnapshotInvalid(f"truncated: {self._got} bytes of {self.size}")

    def _take_header(self, view: memoryview) -> memoryview:
        """Gather the header; the bytes after it, once it is whole."""
        head = self._head
        while len(view):
            want = _PREFIX if len(head) < _PREFIX else _PREFIX + self._header_size(head)
            take = min(len(view), want - len(head))
            head += view[:take]
            view = view[take:]
            if len(head) >= len(MAGIC) and bytes(head[: len(MAGIC)]) != MAGIC:
                raise SnapshotInvalid("not an Engram snapshot (bad magic)")
            if len(head) > _PREFIX and len(head) == _PREFIX + self._header_size(head):
                self._start(*read_header(head))
                return view
        return view

    def _header_size(self, head: bytearray) -> int:
        size = int.from_bytes(head[len(MAGIC) : len(MAGIC) + _LEN], "little")
        if size > self.size - _PREFIX:
            raise SnapshotInvalid("truncated header")
        if size == 0:
            raise SnapshotInvalid("unreadable header: empty")
        return size

    def _start(self, header: SnapshotHeader, offset: int) -> None:
        names = [s.name for s in header.sections]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise SnapshotInvalid(f"section {twice!r} appears twice")
        need = {"records", INDEX} if header.format == 3 else {INDEX}
        if not need <= set(names):
            raise SnapshotInvalid(f"missing sections: {', '.join(sorted(need - set(names)))}")
        if any(s.length < 0 for s in header.sections):
            raise SnapshotInvalid("a section has a negative length")
        total = offset + sum(s.length for s in header.sections)
        if total > self.size:
            raise SnapshotInvalid(f"truncated: the sections need {total} bytes of {self.size}")
        if total < self.size:
            raise SnapshotInvalid(f"{self.size - total} unexpected bytes after the last section")
        self.header, self._sections = header, list(header.sections)
        self._head = bytearray()
        self._begin()

    def _begin(self) -> None:
        if self._at < len(self._sections):
            self._buf = bytearray(self._sections[self._at].length)
            self._fill = 0
            self._hash = hashlib.sha256()

    def _empty_sections(self) -> Iterator[tuple[Section, memoryview]]:
        while self._at < len(self._sections) and self._sections[self._at].length == 0:
            yield self._complete(self._sections[self._at])

    def _complete(self, section: Section) -> tuple[Section, memoryview]:
        if self._hash.hexdigest() != section.sha256:
            raise SnapshotInvalid(f"section {section.name!r} fails its checksum")
        out = memoryview(self._buf)
        self._at += 1
        self._begin()
        return section, out
