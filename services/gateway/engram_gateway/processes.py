"""What several gateway processes on one host share (``ENGRAM_HTTP_WORKERS`` > 1).

uvicorn runs the processes on one listening socket; any of them may take any
connection, so two requests of one client may land on two processes. What a
gateway keeps in memory must then be the same in all of them, or not matter:

* the read-your-writes positions (the highest acknowledged WAL sequence per
  space, :class:`~engram_nats.service.AckedSeqs`): a write acknowledged by one
  process must hold back a ``read_your_writes`` read served by another. They live
  in :class:`SharedAckedSeqs`, a table in a memory-mapped file all processes map;
* the Prometheus metrics: counted per process in ``prometheus_client``'s
  multiprocess mode (a directory of memory-mapped files) and summed by whichever
  process answers ``/metrics`` (see :mod:`engram_gateway.metrics`);
* the space registry: each process watches the registry bucket itself and falls
  back to reading the bucket on a miss, so a space created through one process is
  seen by the others;
* SSE feeds are one JetStream consumer per connection: nothing shared;
* the default-space fallback warning is logged once per client and process.

The parent process makes the directory (:func:`shared_state`) and names it in the
environment its children inherit; a process started without it keeps everything
in its own memory, as a single gateway does.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from engram_contract.messages import SpaceRecord
from engram_nats.service import AckedSeqs

#: names the directory the gateway processes share (set by the parent, inherited)
SHARED_DIR_ENV = "ENGRAM_GATEWAY_SHARED_DIR"
#: prometheus_client's multiprocess directory (read when it is imported)
PROMETHEUS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
ACKED_FILE = "acked-seqs"

_SLOT = struct.Struct("<64sq")  # a space id (≤ 64 ASCII characters, NUL-padded), its seq


def shared_dir() -> Path | None:
    """The directory this process shares with the other gateway processes, if any."""
    raw = os.environ.get(SHARED_DIR_ENV)
    return Path(raw) if raw else None


@contextlib.contextmanager
def shared_state(max_spaces: int) -> Iterator[dict[str, str]]:
    """A fresh directory for the processes about to start (removed on exit): the
    acked-seqs table sized for ``max_spaces`` and the metrics' files. Yields the
    environment variables that name it; set them before the processes start."""
    root = Path(tempfile.mkdtemp(prefix="engram-gateway-", dir=_tmp_root()))
    try:
        metrics_dir = root / "metrics"
        metrics_dir.mkdir()
        SharedAckedSeqs.create(root / ACKED_FILE, max_spaces)
        yield {SHARED_DIR_ENV: str(root), PROMETHEUS_DIR_ENV: str(metrics_dir)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _tmp_root() -> str | None:
    shm = Path("/dev/shm")  # memory-backed where there is one
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class SharedAckedSeqs(AckedSeqs):
    """:class:`AckedSeqs` every gateway process of a host reads and writes: an open
    addressing table of ``(space, seq)`` slots in a memory-mapped file, guarded by
    an ``flock`` on it (held for a few microseconds per call). A seq of 0 is an
    empty position (a deleted space keeps its slot until the table is compacted).

    Only the methods the gateway calls are shared (``get``, ``note``, ``pop``,
    ``on_space_change``); the dict underneath stays empty."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDWR)
        size = os.fstat(self._fd).st_size
        if size == 0 or size % _SLOT.size:
            os.close(self._fd)
            raise ValueError(f"{path} is not an acked-seqs table ({size} bytes)")
        self._map = mmap.mmap(self._fd, size)
        self._slots = size // _SLOT.size

    @classmethod
    def create(cls, path: Path, max_spaces: int) -> None:
        """A zeroed table with room for ``max_spaces`` at a load of at most ½."""
        slots = 1 << max(4, (2 * max_spaces - 1).bit_length())
        with open(path, "wb") as f:
            f.truncate(slots * _SLOT.size)

    @classmethod
    def open_shared(cls) -> SharedAckedSeqs | None:
        """The table of this process's shared directory, if it runs with one."""
        root = shared_dir()
        return None if root is None else cls(root / ACKED_FILE)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    # -- the shared methods --------------------------------------------------------

    def get(self, space: str, default: int | None = None) -> int | None:  # type: ignore[override]
        key = space.encode()
        with self._locked(fcntl.LOCK_SH):
            slot = self._find(key)
            seq = 0 if slot is None else self._seq(slot)
        return seq if seq > 0 else default

    def note(self, space: str, seq: int) -> None:
        key = space.encode()
        with self._locked(fcntl.LOCK_EX):
            slot = self._find(key, insert=True)
            if slot is None:
                self._compact()
                slot = self._find(key, insert=True)
            if slot is None:  # more live spaces than the table was sized for
                raise RuntimeError(f"the gateway's acked-seqs table is full ({self._slots})")
            if seq > self._seq(slot):
                _SLOT.pack_into(self._map, slot * _SLOT.size, key, seq)

    def pop(self, space: str, default: int | None = None) -> int | None:  # type: ignore[override]
        key = space.encode()
        with self._locked(fcntl.LOCK_EX):
            slot = self._find(key)
            seq = 0 if slot is None else self._seq(slot)
            if slot is not None:
                _SLOT.pack_into(self._map, slot * _SLOT.size, key, 0)
        return seq if seq > 0 else default

    async def on_space_change(self, space: str, rec: SpaceRecord | None) -> None:
        if rec is None or rec.status != "active":
            self.pop(space)

    # -- the table -----------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, how: int) -> Iterator[None]:
        fcntl.flock(self._fd, how)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _seq(self, slot: int) -> int:
        seq: int = _SLOT.unpack_from(self._map, slot * _SLOT.size)[1]
        return seq

    def _find(self, key: bytes, insert: bool = False) -> int | None:
        """The slot of ``key``; with ``insert`` an empty slot claimed for it when it
        has none (None: the table is full)."""
        if len(key) > 64:
            raise ValueError(f"space id too long for the acked-seqs table: {key!r}")
        padded = key.ljust(64, b"\0")
        start = zlib.crc32(key) % self._slots
        for i in range(self._slots):
            slot = (start + i) % self._slots
            at = slot * _SLOT.size
            stored = self._map[at : at + 64]
            if stored == padded:
                return slot
            if stored[0] == 0:  # never used: the key is not further on
                if not insert:
                    return None
                _SLOT.pack_into(self._map, at, key, 0)
                return slot
        return None

    def _compact(self) -> None:
        """Drop the slots of deleted spaces (seq 0) and re-place the others."""
        live = []
        for slot in range(self._slots):
            key, seq = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if seq > 0:
                live.append((key.rstrip(b"\0"), seq))
        self._map[:] = bytes(len(self._map))
        for key, seq in live:
            at = self._find(key, insert=True)
            assert at is not None
            _SLOT.pack_into(self._map, at * _SLOT.size, key, seq)
