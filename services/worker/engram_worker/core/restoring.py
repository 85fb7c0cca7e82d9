"""A space's state restored from a snapshot while its bytes are still arriving.

Two stages, each meant for a thread of its own (the worker's
:mod:`engram_worker.snapshot_restore` runs them): :meth:`Restoring.feed` takes
the object's bytes in order and hands out each section once it is whole and
its SHA-256 matches (:class:`~.snapshot_stream.SectionReader`: copying and
hashing, mostly outside the GIL); :meth:`Restoring.take` decodes those
sections, and as soon as the last record column is in, checks and builds the
records and the graph (:func:`.persistence.prepare`) — while the index, the
last and largest section, is still on its way. :meth:`Restoring.finish` then
only has to map the index (a usearch view of its checked bytes, see
:meth:`.index.VectorIndex.from_bytes`) and check the records against it.

The header is checked as soon as it is read (``check``: why this snapshot will
not do, e.g. another space's), so a snapshot that cannot be used is refused
before its sections are read. Anything wrong is a
:class:`~.snapshot.SnapshotInvalid`, as with :func:`.snapshot.decode` and
:func:`.persistence.restore` on the whole bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from engram_worker.core.index import VectorIndex
from engram_worker.core.persistence import Restored, finish, prepare
from engram_worker.core.snapshot import (
    INDEX,
    Column,
    Section,
    SnapshotHeader,
    SnapshotInvalid,
    _column,
    _decode_v3,
)
from engram_worker.core.snapshot_stream import SectionReader
from engram_worker.core.state import SpaceState

#: a clock for the steps' times (seconds; injected: the core reads none)
Clock = Callable[[], float]


class Restoring:
    """One snapshot of ``size`` bytes on its way into a fresh state."""

    def __init__(
        self,
        size: int,
        check: Callable[[SnapshotHeader], str | None],
        clock: Clock = lambda: 0.0,
    ) -> None:
        self.reader = SectionReader(size)
        self._check = check
        self._checked = False
        self._clock = clock
        self._columns: dict[str, Column] = {}
        self._parts: dict[str, memoryview] = {}  # format 3: the raw sections
        self._index: memoryview | None = None
        self._waiting: set[str] = set()  # record sections not yet taken
        self._restored: Restored | None = None
        #: when each step ended (by ``clock``), for the log
        self.times: dict[str, float] = {}

    @property
    def header(self) -> SnapshotHeader | None:
        return self.reader.header

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[tuple[Section, memoryview]]:
        """The next bytes (in order): the sections they complete, checked, for
        :meth:`take`. Raises :class:`SnapshotInvalid`."""
        done = self.reader.feed(chunk)
        header = self.reader.header
        if header is not None and not self._checked:
            problem = self._check(header)
            if problem:
                raise SnapshotInvalid(problem)
            self._checked = True
            self._waiting = {s.name for s in header.sections if s.name != INDEX}
            self.times["header"] = self._clock()
        return done

    def take(self, sections: list[tuple[Section, memoryview]]) -> None:
        """Decode sections :meth:`feed` handed out (in order); once every record
        column is in, build the records. Raises :class:`SnapshotInvalid`."""
        if not sections:
            return
        header = self.reader.header
        assert header is not None, "sections come after the header"
        for section, raw in sections:
            if section.name == INDEX:
                self._index = raw
                self.times["index read"] = self._clock()
            elif header.format == 3:
                self._parts[section.name] = raw
            else:
                self._columns[section.name] = _column(section, raw)
            self._waiting.discard(section.name)
        if not self._waiting and self._restored is None:
            self._prepare(header)

    def finish(self, fresh: Callable[[], SpaceState]) -> tuple[SnapshotHeader, SpaceState]:
        """Every byte fed and every section taken: the restored state (a new one
        from ``fresh``). Raises :class:`SnapshotInvalid`, or ``ValueError`` for
        an index usearch cannot read."""
        self.reader.end()
        header = self.reader.header
        assert header is not None and self._index is not None, "end() checked them"
        if self._restored is None:
            self._prepare(header)
        assert self._restored is not None
        state = fresh()
        index = VectorIndex.from_bytes(self._index, state.dim, state.metric, view=True)
        finish(state, self._restored, index)
        self.times["index"] = self._clock()
        return header, state

    def _prepare(self, header: SnapshotHeader) -> None:
        records = self._columns
        if header.format == 3:  # one JSON section of records (the index is not read)
            records = _decode_v3(header, {**self._parts, INDEX: memoryview(b"")}).records
            self._parts.clear()
        self._restored = prepare(
            records,
            applied_seq=header.applied_seq,
            next_key=header.next_key,
            rejected=header.rejected,
            format=header.format,
        )
        self._columns = {}
        self.times["records"] = self._clock()
