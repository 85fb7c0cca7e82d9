"""The key store: KV ``ENGRAM_KEYS`` (one record per key id, the key's hash, never
the key), followed by every process that checks keys.

A process holds the whole (small) bucket in memory and checks a presented key
against it without a round trip. It follows the bucket through a watch, so a
revoked key is refused within milliseconds on every gateway; and it compares the
bucket's last sequence with the last one its watch delivered every few seconds,
watching again when the watch fell behind or died (a NATS restart loses its
consumer), so a missed revocation cannot outlive that check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from engram_contract.keys import (
    ENV_ADMIN_ID,
    KeyRecord,
    Principal,
    Role,
    key_id,
    matches,
    new_record,
    operator_record,
)
from engram_contract.subjects import KEYS_BUCKET
from engram_nats.connection import settled

log = logging.getLogger(__name__)

#: how often the watch is checked against the bucket's last sequence
RESYNC_S = 5.0
#: ``last_used_at`` is written at most this often per key and process
TOUCH_EVERY_S = 60.0


class _Follower:
    """The bucket's records in memory, kept current by a watch that is checked
    against the bucket's last sequence every :data:`RESYNC_S` seconds."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self.kv: KeyValue | None = None
        self.records: dict[str, KeyRecord] = {}
        self._delivered = 0  # the last bucket sequence the watch delivered
        self._task: asyncio.Task[None] | None = None
        self._watcher: object | None = None
        self.loaded = asyncio.Event()

    async def start(self, kv: KeyValue) -> None:
        self.kv = kv
        self._task = asyncio.create_task(self._follow(), name="keys-follow")
        await asyncio.wait_for(self.loaded.wait(), 30.0)

    async def _follow(self) -> None:
        while True:
            watching = asyncio.create_task(self._watch(), name="keys-watch")
            try:
                while not watching.done():
                    await asyncio.sleep(RESYNC_S)
                    if await self._behind():
                        log.warning("keys: the watch fell behind the bucket; watching again")
                        break
            except Exception as exc:  # NATS away: try again on the next round
                log.warning("keys: checking the watch failed: %r", exc)
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watching
                await self._stop_watcher()

    async def _behind(self) -> bool:
        info = await self._js.stream_info(f"KV_{KEYS_BUCKET}")
        last = int(info.state.last_seq or 0)
        if last <= self._delivered:
            return False
        await asyncio.sleep(1.0)  # a change on its way through the watch
        return last > self._delivered

    async def _watch(self) -> None:
        assert self.kv is not None
        watcher = await self.kv.watchall()
        self._watcher = watcher
        fresh: dict[str, KeyRecord] = {}
        initial = True
        async for entry in watcher:
            if entry is None:  # the end of the current values: they replace ours
                initial = False
                self.records = fresh
                self.loaded.set()
                continue
            self._delivered = max(self._delivered, int(entry.revision or 0))
            target = fresh if initial else self.records
            if entry.operation is not None or not entry.value:
                target.pop(entry.key, None)
                continue
            try:
                target[entry.key] = KeyRecord.model_validate_json(entry.value)
            except ValidationError:
                log.error("keys: unreadable key record under %r; it is refused", entry.key)
                target.pop(entry.key, None)

    async def _stop_watcher(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._watcher.stop(), 2.0)  # type: ignore[attr-defined]
            self._watcher = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._stop_watcher()


class KeyStore:
    """The keys, as one process sees them."""

    def __init__(self, js: JetStreamContext, *, replicas: int = 1) -> None:
        self._js = js
        self._replicas = replicas
        self._kv: KeyValue | None = None
        self._follower = _Follower(js)
        self._touched: dict[str, float] = {}

    @property
    def _records(self) -> dict[str, KeyRecord]:
        return self._follower.records

    @property
    def kv(self) -> KeyValue:
        assert self._kv is not None, "KeyStore.open() first"
        return self._kv

    async def open(self) -> None:
        self._kv = await settled(self._open, f"opening KV {KEYS_BUCKET}")

    async def _open(self) -> KeyValue:
        try:
            return await self._js.key_value(KEYS_BUCKET)
        except BucketNotFoundError:
            return await self._js.create_key_value(
                bucket=KEYS_BUCKET,
                history=1,
                storage=api.StorageType.FILE,
                replicas=self._replicas,
                description="Engram API keys (hashes, scopes, roles)",
            )

    async def start(self) -> None:
        """Open the bucket, follow it, and return once its current keys are in."""
        if self._kv is None:
            await self.open()
        await self._follower.start(self.kv)

    async def close(self) -> None:
        await self._follower.close()

    # -- checking ----------------------------------------------------------

    def authenticate(self, key: str) -> Principal | None:
        """The principal of a presented key, or None (unknown, revoked, malformed)."""
        kid = key_id(key)
        record = self._records.get(kid) if kid is not None else None
        if record is None or not matches(record, key):
            return None
        self._touch(record)
        return Principal.of(record)

    def any_keys(self) -> bool:
        return bool(self._records)

    def _touch(self, record: KeyRecord) -> None:
        """Note that the key was used (at most every :data:`TOUCH_EVERY_S`)."""
        now = time.monotonic()
        if now - self._touched.get(record.id, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
            return
        self._touched[record.id] = now
        task = asyncio.get_running_loop().create_task(self._write_used(record.id))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _write_used(self, kid: str) -> None:
        try:
            entry = await self.kv.get(kid)
        except KeyNotFoundError:
            return
        if not entry.value:
            return
        record = KeyRecord.model_validate_json(entry.value)
        used = record.model_copy(update={"last_used_at": datetime.now(UTC)})
        # only over the record read: a revocation meanwhile wins
        with contextlib.suppress(Exception):
            await self.kv.update(kid, used.model_dump_json().encode(), last=entry.revision)

    # -- managing ----------------------------------------------------------

    async def create(self, role: Role, spaces: list[str], label: str = "") -> tuple[KeyRecord, str]:
        """A new key: its record (stored) and the key itself (shown once)."""
        record, key = new_record(role, spaces, label)
        await self.kv.create(record.id, record.model_dump_json().encode())
        self._records[record.id] = record  # visible here at once, not only after the watch
        return record, key

    async def set_operator_key(self, key: str) -> KeyRecord:
        """Store ``ENGRAM_ADMIN_KEY``'s record (replacing the previous operator key:
        setting a new one and restarting is how it is rotated)."""
        record = operator_record(key)
        current = self._records.get(record.id)
        if current is not None and current.hash == record.hash:
            return current
        if current is not None and record.id != ENV_ADMIN_ID:
            raise ValueError(f"ENGRAM_ADMIN_KEY looks like key {record.id}, which exists")
        await self.kv.put(record.id, record.model_dump_json().encode())
        self._records[record.id] = record
        return record

    def list(self) -> list[KeyRecord]:
        return sorted(self._records.values(), key=lambda r: r.created_at)

    async def revoke(self, kid: str) -> bool:
        """End a key; False when there is no such key."""
        if kid not in self._records:
            try:
                entry = await self.kv.get(kid)
            except KeyNotFoundError:
                return False
            if not entry.value:
                return False
        await self.kv.delete(kid)
        self._records.pop(kid, None)
        return True
