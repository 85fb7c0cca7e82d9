"""Writing and reading space snapshots in the Object Store ``ENGRAM_SNAPSHOTS``
(the bucket, its layout and erasing are :mod:`engram_nats.snapshots`).

The store does its own ``put``: the replaced version's chunks are erased (see
:mod:`engram_nats.snapshots`), and chunks are published pipelined. Reads go
through an ordered consumer into one preallocated buffer.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from nats.js import api
from nats.js.errors import APIError, NotFoundError

from engram_contract.ids import new_id
from engram_nats.consumers import close_consumer
from engram_nats.snapshots import (
    BUCKET,
    CHUNK_SIZE,
    STREAM,
    SnapshotBucket,
    chunk_subject,
    meta_subject,
    object_info,
)

log = logging.getLogger(__name__)

_WINDOW = 16  # chunks in flight while writing
_READ_TIMEOUT = 5.0  # seconds without a chunk before a read gives up
_WRONG_LAST_SEQUENCE = 10071  # JSStreamWrongLastSequenceErr
_META_TRIES = 20


class SnapshotUnreadable(Exception):
    """The object exists but cannot be read back whole (digest mismatch, lost chunks)."""


def _chunks(parts: Sequence[bytes | bytearray | memoryview], size: int) -> list[bytes]:
    """Cut the parts, read back to back, into chunks of ``size`` bytes."""
    out: list[bytes] = []
    pending = bytearray()
    for part in parts:
        view = memoryview(part)
        while len(view):
            take = size - len(pending)
            pending += view[:take]
            view = view[take:]
            if len(pending) == size:
                out.append(bytes(pending))
                pending.clear()
    if pending:
        out.append(bytes(pending))
    return out


class Sink(Protocol):
    """Where :meth:`SnapshotStore.read` puts a snapshot's chunks."""

    def feed(self, chunk: bytes) -> None:
        """The next chunk (called on the event loop: hand heavy work to a thread;
        raise to stop reading)."""

    async def end(self) -> None:
        """Every chunk was fed: finish (raise if the bytes will not do)."""

    def close(self) -> None:
        """Done with (read whole, or given up): let go of threads."""


S = TypeVar("S", bound=Sink)


class _Whole:
    """A sink that gathers the object into one buffer and checks its SHA-256
    digest (computed in a thread of its own while the chunks arrive: hashlib
    releases the GIL)."""

    def __init__(self, info: api.ObjectInfo) -> None:
        self._info = info
        self._buf = bytearray(int(info.size or 0))
        self._got = 0
        self._digest = hashlib.sha256()
        self._hashing = concurrent.futures.ThreadPoolExecutor(1, "snapshot-digest")
        self._hashed: concurrent.futures.Future[None] | None = None

    def feed(self, chunk: bytes) -> None:
        self._buf[self._got : self._got + len(chunk)] = chunk
        self._got += len(chunk)
        # in order: one thread
        self._hashed = self._hashing.submit(self._digest.update, chunk)

    async def end(self) -> None:
        if self._hashed is not None:
            await asyncio.wrap_future(self._hashed)
        want = (self._info.digest or "").removeprefix("SHA-256=")
        have = base64.urlsafe_b64encode(self._digest.digest()).decode()
        if want.rstrip("=") != have.rstrip("="):
            raise SnapshotUnreadable("the object fails its SHA-256 digest")

    def close(self) -> None:
        self._hashing.shutdown(wait=False, cancel_futures=True)

    def bytes(self) -> memoryview:
        return memoryview(self._buf)


class SnapshotStore(SnapshotBucket):
    """The bucket, plus writing a space's new snapshot and reading the newest."""

    async def load(self, space: str) -> tuple[api.ObjectInfo, memoryview] | None:
        """The newest snapshot's info and bytes, ``None`` if there is none; raises
        :class:`SnapshotUnreadable` when it cannot be read back whole (its size
        and SHA-256 digest are checked)."""
        got = await self.read(space, _Whole)
        if got is None:
            return None
        info, whole = got
        return info, whole.bytes()

    async def read(
        self, space: str, sink: Callable[[api.ObjectInfo], S]
    ) -> tuple[api.ObjectInfo, S] | None:
        """Feed the newest snapshot's chunks, in order, to ``sink(info)`` (its
        ``feed`` on the event loop, then its ``end``); ``None`` if there is no
        snapshot. Raises :class:`SnapshotUnreadable` when chunks are missing or
        the bytes are not the size announced, and whatever the sink raises. A
        snapshot replaced while it was read is read again, with a new sink."""
        info = await self.info(space)
        for _ in range(3):
            if info is None:
                return None
            into = sink(info)
            try:
                await self._feed(info, into)
                await into.end()
                return info, into
            except SnapshotUnreadable:
                now = await self.info(space)
                if now is not None and now.nuid == info.nuid:
                    raise
                info = now  # replaced or deleted while we read: its chunks went
            finally:
                into.close()
        raise SnapshotUnreadable("the snapshot kept being replaced while it was read")

    async def _feed(self, info: api.ObjectInfo, into: Sink) -> None:
        """An object's chunks, in order, into ``into``, checked against its size.

        nats-py's ``get(writeinto=)`` is linear but waits on its flow-control
        timer between batches (about 3 s for 180 MB, measured); an ordered
        consumer read with ``next_msg`` moves the same bytes in a tenth of that."""
        size = int(info.size or 0)
        got = 0
        if info.chunks:
            sub = await self._js.subscribe(
                chunk_subject(info.nuid or ""),
                ordered_consumer=True,
                pending_bytes_limit=max(64 * 1024 * 1024, 4 * CHUNK_SIZE),
            )
            try:
                for _ in range(int(info.chunks)):
                    try:
                        msg = await sub.next_msg(timeout=_READ_TIMEOUT)
                    except TimeoutError:
                        raise SnapshotUnreadable(
                            f"chunks missing: read {got} bytes of {size}"
                        ) from None
                    chunk = msg.data
                    if got + len(chunk) > size:
                        raise SnapshotUnreadable(f"more than the {size} bytes announced")
                    into.feed(chunk)
                    got += len(chunk)
            finally:
                await close_consumer(self._js, STREAM, sub)
        if got != size:
            raise SnapshotUnreadable(f"read {got} bytes of {size}")

    async def save(
        self,
        space: str,
        parts: Sequence[bytes | bytearray | memoryview],
        headers: dict[str, str],
        description: str = "",
    ) -> api.ObjectInfo:
        """Write a new snapshot of ``space``, then erase the one it replaces."""
        nuid = new_id()
        subject = chunk_subject(nuid)
        digest = hashlib.sha256()
        size = 0
        chunks = await asyncio.to_thread(_chunks, parts, CHUNK_SIZE)
        try:
            for i in range(0, len(chunks), _WINDOW):
                window = []
                for chunk in chunks[i : i + _WINDOW]:
                    digest.update(chunk)
                    size += len(chunk)
                    window.append(await self._js.publish_async(subject, chunk))
                await asyncio.gather(*window)
            info = api.ObjectInfo(
                name=space,
                bucket=BUCKET,
                nuid=nuid,
                size=size,
                chunks=len(chunks),
                mtime=datetime.now(UTC).isoformat(),
                digest="SHA-256=" + base64.urlsafe_b64encode(digest.digest()).decode(),
                description=description or None,
                headers={k: [v] for k, v in headers.items()},
                options=api.ObjectMetaOptions(max_chunk_size=CHUNK_SIZE),
            )
            old = await self._replace_meta(space, json.dumps(info.as_dict()).encode())
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.erase_chunks(nuid))
            raise
        # exactly the version this info replaced: with several writers of one
        # space (replicas, a replay racing a worker) each erases its predecessor
        if old is not None and old.nuid and old.nuid != nuid:
            await self.erase_chunks(old.nuid)
        return info

    async def _replace_meta(self, space: str, data: bytes) -> api.ObjectInfo | None:
        """Publish a space's new object info in place of the current one and return
        the one it replaced. Optimistic concurrency: the publish names the sequence
        of the info it replaces, so a writer that lost the race reads again."""
        subject = meta_subject(space)
        for _ in range(_META_TRIES):
            try:
                last = await self._js.get_last_msg(STREAM, subject)
                seq, old = last.seq, object_info(last.data)
            except NotFoundError:
                seq, old = 0, None
            try:
                await self._js.publish(
                    subject,
                    data,
                    headers={
                        api.Header.ROLLUP: "sub",
                        api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(seq),
                    },
                )
            except APIError as exc:
                if exc.err_code == _WRONG_LAST_SEQUENCE:
                    continue  # another writer got there first: replace theirs
                raise
            return old
        raise RuntimeError(
            f"snapshot of {space}: lost the race to other writers {_META_TRIES} times"
        )

    async def sweep_loop(self, every: float = 600.0) -> None:
        """Erase snapshot chunks a crashed writer left behind, now and then."""
        while True:
            try:
                await self.sweep(min_age=600)
            except Exception:
                log.exception("snapshot sweep failed")
            await asyncio.sleep(every)

    async def sweep(self, min_age: float = 600.0) -> int:
        """Erase chunks no snapshot refers to (left by a writer that crashed mid-put)
        once they are ``min_age`` seconds old; returns how many versions went."""
        info = await self._js.stream_info(STREAM, subjects_filter=f"$O.{BUCKET}.C.>")
        subjects = set((info.state.subjects or {}).keys())
        if not subjects:
            return 0
        live = set()
        with contextlib.suppress(NotFoundError):
            for obj in await self.obj.list(ignore_deletes=True):
                live.add(chunk_subject(obj.nuid))
        swept = 0
        for subject in sorted(subjects - live):
            try:
                last = await self._js.get_last_msg(STREAM, subject)
            except NotFoundError:
                continue
            written = last.time.timestamp() if last.time else 0.0
            if time.time() - written < min_age:
                continue  # maybe a put still in progress
            nuid = subject.rsplit(".", 1)[-1]
            log.warning("snapshots: erasing orphaned chunks %s", nuid)
            await self.erase_chunks(nuid)
            swept += 1
        return swept
