"""The worker's reader/writer lock: readers share, a writer is alone, and a
waiting writer is not starved by readers that come after it."""

from __future__ import annotations

import asyncio

import pytest

from engram_worker.rwlock import RWLock


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_readers_share_and_a_writer_waits_for_them() -> None:
    lock = RWLock()
    await lock.acquire_read()
    await lock.acquire_read()
    assert lock.readers == 2 and not lock.idle
    writer = asyncio.create_task(lock.acquire_write())
    await settle()
    assert not writer.done()
    lock.release_read()
    await settle()
    assert not writer.done()
    lock.release_read()
    await writer
    assert lock.writing and lock.readers == 0
    lock.release_write()
    assert lock.idle


async def test_a_waiting_writer_holds_back_later_readers() -> None:
    lock = RWLock()
    await lock.acquire_read()
    writer = asyncio.create_task(lock.acquire_write())
    await settle()
    late_reader = asyncio.create_task(lock.acquire_read())
    await settle()
    assert not writer.done() and not late_reader.done()
    lock.release_read()
    await writer
    await settle()
    assert not late_reader.done()  # the writer goes first
    lock.release_write()
    await late_reader
    assert lock.readers == 1
    lock.release_read()
    assert lock.idle


async def test_readers_queued_behind_a_writer_go_together() -> None:
    lock = RWLock()
    await lock.acquire_write()
    readers = [asyncio.create_task(lock.acquire_read()) for _ in range(3)]
    await settle()
    assert not any(r.done() for r in readers)
    lock.release_write()
    await asyncio.gather(*readers)
    assert lock.readers == 3


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    lock = RWLock()
    await lock.acquire_read()
    writer = asyncio.create_task(lock.acquire_write())
    await settle()
    reader = asyncio.create_task(lock.acquire_read())  # behind the writer
    await settle()
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    await reader  # the writer that gave up no longer holds it back
    lock.release_read()
    lock.release_read()
    assert lock.idle


async def test_async_with_takes_it_for_writing() -> None:
    lock = RWLock()
    async with lock:
        assert lock.writing
        reader = asyncio.create_task(lock.acquire_read())
        await settle()
        assert not reader.done()
    await reader
    lock.release_read()
    assert lock.idle


async def test_a_downgraded_writer_lets_queued_readers_in_but_not_a_waiting_writer() -> None:
    lock = RWLock()
    await lock.acquire_write()
    early = [asyncio.create_task(lock.acquire_read()) for _ in range(2)]
    await settle()
    writer = asyncio.create_task(lock.acquire_write())
    await settle()
    late = asyncio.create_task(lock.acquire_read())  # behind the waiting writer
    await settle()
    lock.downgrade()
    await asyncio.gather(*early)  # the readers ahead of the writer go in beside it
    await settle()
    assert lock.readers == 3 and not lock.writing
    assert not writer.done()  # no writer gets in between the write and the read
    assert not late.done()  # and the reader behind it still waits its turn
    lock.release_read()  # the downgraded one
    for _ in early:
        lock.release_read()
    await writer
    await settle()
    assert not late.done()
    lock.release_write()
    await late
    lock.release_read()
    assert lock.idle


async def test_a_downgraded_writer_keeps_a_writer_out_until_it_leaves() -> None:
    lock = RWLock()
    await lock.acquire_write()
    writer = asyncio.create_task(lock.acquire_write())
    await settle()
    lock.downgrade()
    await settle()
    assert not writer.done() and lock.readers == 1
    newcomer = asyncio.create_task(lock.acquire_read())  # queues behind the writer
    await settle()
    assert not newcomer.done()
    lock.release_read()
    await writer
    lock.release_write()
    await newcomer
    lock.release_read()
    assert lock.idle


async def test_only_the_writer_can_downgrade() -> None:
    lock = RWLock()
    with pytest.raises(AssertionError):
        lock.downgrade()
    await lock.acquire_read()
    with pytest.raises(AssertionError):
        lock.downgrade()
