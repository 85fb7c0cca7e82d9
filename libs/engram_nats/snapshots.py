"""The Object Store ``ENGRAM_SNAPSHOTS``: one snapshot object per space, named by
the space id, and erasing them.

Objects are in the Object Store's own layout (chunks on
``$O.ENGRAM_SNAPSHOTS.C.<nuid>``, the object's info on ``$O.ENGRAM_SNAPSHOTS.M.<name>``),
so ``nats object get ENGRAM_SNAPSHOTS <space>`` and nats-py's ``get`` read them.
Replacing or deleting an object the Object Store's way *purges* the old chunks,
and a purge leaves their bytes in the stream's files (measured). Here the old
chunks are erased message by message with JetStream's message delete, which
overwrites them, so a forgotten memory does not live on in an old snapshot.

This is what every process needs of snapshots (the registry erases a deleted
space's; the gateway's status reads an unhosted space's position). Writing and
reading them is the worker's: :mod:`engram_worker.snapshots`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from engram_contract.subjects import SNAPSHOT_BUCKET
from engram_nats.consumers import close_consumer, delete_msg

BUCKET = SNAPSHOT_BUCKET
STREAM = f"OBJ_{BUCKET}"
CHUNK_SIZE = 512 * 1024  # under the server's default 1 MiB max_payload
_ERASE_WINDOW = 64


def object_info(data: bytes | None) -> api.ObjectInfo | None:
    """An object's info message (``None`` for a delete marker or unreadable data)."""
    try:
        info = api.ObjectInfo.from_response(json.loads(data or b"null"))
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    return None if info.deleted else info


def chunk_subject(nuid: str) -> str:
    return f"$O.{BUCKET}.C.{nuid}"


def meta_subject(name: str) -> str:
    return f"$O.{BUCKET}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


class SnapshotBucket:
    """The snapshot objects: open the bucket, read an object's info, erase one."""

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
        assert self._obj is not None, "SnapshotBucket.open() first"
        return self._obj

    async def info(self, space: str) -> api.ObjectInfo | None:
        try:
            info = await self.obj.get_info(space)
        except NotFoundError:
            return None
        return None if info.deleted else info

    async def erase(self, space: str) -> int:
        """Erase ``space``'s snapshot: its chunks (overwritten) and its info."""
        info = await self.info(space)
        erased = 0 if info is None else await self.erase_chunks(info.nuid)
        with contextlib.suppress(NotFoundError):
            await self._js.purge_stream(STREAM, subject=meta_subject(space))
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
        seqs = await self._chunk_seqs(chunk_subject(nuid))

        async def erase(seq: int) -> None:
            await delete_msg(self._js, STREAM, seq)

        for i in range(0, len(seqs), _ERASE_WINDOW):
            await asyncio.gather(*(erase(s) for s in seqs[i : i + _ERASE_WINDOW]))
        return len(seqs)
