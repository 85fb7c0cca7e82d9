"""Handing freed heap back to the system after a bulk fold (engram_worker.memory)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from engram_worker.memory import can_release, release


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not can_release(), reason="glibc only")
def test_release_returns_freed_blocks_between_live_ones() -> None:
    # 2 KB blocks are above pymalloc's limit: glibc's heap, as a fold's WAL
    # messages are; one in 64 stays alive, so the heap's top cannot shrink
    blocks = [bytes(2000) + i.to_bytes(4, "little") for i in range(60_000)]
    kept = blocks[::64]
    del blocks
    gc.collect()
    before = _rss()
    assert release()
    after = _rss()
    assert before - after > 60_000_000, (before, after)
    assert all(len(b) == 2004 for b in kept)  # the live blocks are untouched
