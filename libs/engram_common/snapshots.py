"""Snapshots in the Object Store ``ENGRAM_SNAPSHOTS``: one object per space, named
by the space id.

Objects are written in the Object Store's own layout (chunks on
``$O.ENGRAM_SNAPSHOTS.C.<nuid>``, the object's info on ``$O.ENGRAM_SNAPSHOTS.M.<name>``),
so ``nats object get ENGRAM_SNAPSHOTS <space>`` and nats-py's ``get`` read them.
The store does its own ``put`` for one reason: replacing or deleting an object
normally *purges* the old chunks, and a purge leaves their bytes in the stream's
files (measured). Here the old chunks are erased message by message with
JetStream's message delete, which overwrites them, so a forgotten memory does not
live on in an old snapshot. Chunks are published pipelined as well.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError
from nats.js.object_store import ObjectStore

from engram_common.ids import new_id
from engram_common.jetstream import close_consumer
from engram_common.subjects import SNAPSHOT_BUCKET

log = logging.getLogger(__name__)

BUCKET = SNAPSHOT_BUCKET
STREAM = f"OBJ_{BUCKET}"
CHUNK_SIZE = 512 * 1024  # under the server's default 1 MiB max_payload
_WINDOW = 16  # chunks in flight while writing
_ERASE_WINDOW = 64
_READ_TIMEOUT = 5.0  # seconds without a chunk before a read gives up
_NO_MESSAGE_FOUND = 10057  # JSNoMessageFoundErr
# JSSequenceNotFoundErr: what a delete answers when another client erased the
# message a moment before (a worker and a gateway both erasing a deleted space's
# snapshot, seen in CI)
_SEQUENCE_NOT_FOUND = 10043
_WRONG_LAST_SEQUENCE = 10071  # JSStreamWrongLastSequenceErr
_META_TRIES = 20


def _object_info(data: bytes | None) -> api.ObjectInfo | None:
    """An object's info message (``None`` for a delete marker or unreadable data)."""
    try:
        info = api.ObjectInfo.from_response(json.loads(data or b"null"))
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    return None if info.deleted else info


class SnapshotUnreadable(Exception):
    """The object exists but cannot be read back whole (digest mismatch, lost chunks)."""


async def delete_msg(js: JetStreamContext, stream: str, seq: int) -> bool:
    """Erase one message (JetStream overwrites its bytes); ``False`` when it was
    already gone (erased by someone else, or never there)."""
    try:
        await js.delete_msg(stream, seq)
    except NotFoundError:
        return False
    except APIError as exc:
        if exc.err_code in (_NO_MESSAGE_FOUND, _SEQUENCE_NOT_FOUND):
            return False
        raise
    return True


def _chunk_subject(nuid: str) -> str:
    return f"$O.{BUCKET}.C.{nuid}"


def _meta_subject(name: str) -> str:
    return f"$O.{BUCKET}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


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


class SnapshotStore:
    def __init__(self, js: JetStreamContext, replicas: int = 1) -> None:
        self._js = js
        self._replicas = replicas
        self._obj: ObjectStore | None = None

    async def open(self) -> None:
        try:
            self._obj = await self._js.object_store(BUCKET)
        except NotFoundError:
            config = api.ObjectStoreConfig(
                bucket=BUCKET,
                description="Engram: newest snapshot of each memory space",
                storage=api.StorageType.FILE,
                replicas=self._replicas,
            )
            self._obj = await self._js.create_object_store(BUCKET, config=config)

    @property
    def obj(self) -> ObjectStore:
        assert self._obj is not None, "SnapshotStore.open() first"
        return self._obj

    async def info(self, space: str) -> api.ObjectInfo | None:
        try:
            info = await self.obj.get_info(space)
        except NotFoundError:
            return None
        return None if info.deleted else info

    async def load(self, space: str) -> tuple[api.ObjectInfo, memoryview] | None:
        """The newest snapshot's info and bytes, ``None`` if there is none; raises
        :class:`SnapshotUnreadable` when it cannot be read back whole."""
        info = await self.info(space)
        for _ in range(3):
            if info is None:
                return None
            try:
                return info, await self._read(info)
            except SnapshotUnreadable:
                now = await self.info(space)
                if now is not None and now.nuid == info.nuid:
                    raise
                info = now  # replaced or deleted while we read: its chunks went
        raise SnapshotUnreadable("the snapshot kept being replaced while it was read")

    async def _read(self, info: api.ObjectInfo) -> memoryview:
        """An object's bytes, chunk by chunk, checked against its size and digest.

        nats-py's ``get(writeinto=)`` is linear but waits on its flow-control
        timer between batches (about 3 s for 180 MB, measured); an ordered
        consumer read with ``next_msg`` moves the same bytes in a tenth of that."""
        size = int(info.size or 0)
        buf = bytearray(size)
        digest = hashlib.sha256()
        got = 0
        if info.chunks:
            sub = await self._js.subscribe(
                _chunk_subject(info.nuid or ""),
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
                    buf[got : got + len(chunk)] = chunk
                    digest.update(chunk)
                    got += len(chunk)
            finally:
                await close_consumer(self._js, STREAM, sub)
        if got != size:
            raise SnapshotUnreadable(f"read {got} bytes of {size}")
        want = (info.digest or "").removeprefix("SHA-256=")
        have = base64.urlsafe_b64encode(digest.digest()).decode()
        if want.rstrip("=") != have.rstrip("="):
            raise SnapshotUnreadable("the object fails its SHA-256 digest")
        return memoryview(buf)

    async def save(
        self,
        space: str,
        parts: Sequence[bytes | bytearray | memoryview],
        headers: dict[str, str],
        description: str = "",
    ) -> api.ObjectInfo:
        """Write a new snapshot of ``space``, then erase the one it replaces."""
        nuid = new_id()
        subject = _chunk_subject(nuid)
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
        subject = _meta_subject(space)
        for _ in range(_META_TRIES):
            try:
                last = await self._js.get_last_msg(STREAM, subject)
                seq, old = last.seq, _object_info(last.data)
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

    async def erase(self, space: str) -> int:
        """Erase ``space``'s snapshot: its chunks (overwritten) and its info."""
        info = await self.info(space)
        erased = 0 if info is None else await self.erase_chunks(info.nuid)
        with contextlib.suppress(NotFoundError):
            await self._js.purge_stream(STREAM, subject=_meta_subject(space))
        return erased

    async def _chunk_seqs(self, subject: str) -> list[int]:
        info = await self._js.stream_info(STREAM, subjects_filter=subject)
        count = (info.state.subjects or {}).get(subject, 0)
        if not count:
            return []
        seqs: list[int] = []
        sub = await self._js.subscribe(subject, ordered_consumer=True, headers_only=True)
        try:
            while len(seqs) < count:
                try:
                    msg = await sub.next_msg(timeout=2)
                except TimeoutError:
                    break  # someone else erased the rest meanwhile
                seqs.append(msg.metadata.sequence.stream)
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await close_consumer(self._js, STREAM, sub)
        return seqs

    async def erase_chunks(self, nuid: str) -> int:
        """Erase every chunk of one object version; JetStream overwrites each."""
        seqs = await self._chunk_seqs(_chunk_subject(nuid))

        async def erase(seq: int) -> None:
            await delete_msg(self._js, STREAM, seq)

        for i in range(0, len(seqs), _ERASE_WINDOW):
            await asyncio.gather(*(erase(s) for s in seqs[i : i + _ERASE_WINDOW]))
        return len(seqs)

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
                live.add(_chunk_subject(obj.nuid))
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
