"""The read-your-writes positions several gateway processes share: a table in a
memory-mapped file, opened by each process (here: several opens of one file, which
is what the processes do)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from engram_contract.messages import SpaceRecord
from engram_gateway.processes import (
    ACKED_FILE,
    PROMETHEUS_DIR_ENV,
    SHARED_DIR_ENV,
    SharedAckedSeqs,
    shared_state,
)


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "acked"
    SharedAckedSeqs.create(path, max_spaces=8)
    return path


def test_a_write_noted_by_one_process_is_seen_by_another(table: Path) -> None:
    a, b = SharedAckedSeqs(table), SharedAckedSeqs(table)
    assert b.get("space-1") is None
    a.note("space-1", 7)
    assert b.get("space-1") == 7
    b.note("space-1", 5)  # an older ack never moves the position back
    assert a.get("space-1") == 7
    b.note("space-1", 9)
    assert a.get("space-1") == 9 and a.get("space-2") is None


def test_a_deleted_space_starts_again_from_nothing(table: Path) -> None:
    a, b = SharedAckedSeqs(table), SharedAckedSeqs(table)
    a.note("gone", 40)
    assert b.pop("gone") == 40
    assert a.get("gone") is None
    a.note("gone", 3)  # re-created: its stream starts again at 1
    assert b.get("gone") == 3


async def test_the_registry_listener_forgets_deleted_spaces(table: Path) -> None:
    a, b = SharedAckedSeqs(table), SharedAckedSeqs(table)
    a.note("kept", 4)
    a.note("dropped", 6)
    await b.on_space_change("dropped", None)
    await b.on_space_change("kept", _record("kept"))
    assert a.get("dropped") is None and a.get("kept") == 4


def test_deleted_spaces_make_room_for_new_ones(table: Path) -> None:
    acked = SharedAckedSeqs(table)  # 16 slots for 8 spaces
    for round_ in range(10):  # 80 spaces over time, at most 8 alive at once
        names = [f"space-{round_}-{i}" for i in range(8)]
        for seq, name in enumerate(names, start=1):
            acked.note(name, seq)
        assert [acked.get(n) for n in names] == list(range(1, 9))
        for name in names:
            acked.pop(name)


def test_more_live_spaces_than_the_table_holds_is_an_error(table: Path) -> None:
    acked = SharedAckedSeqs(table)
    for i in range(16):
        acked.note(f"space-{i:03d}", 1)
    with pytest.raises(RuntimeError, match="full"):
        acked.note("one-too-many", 1)


def test_a_file_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "acked"
    path.write_bytes(b"not a table")
    with pytest.raises(ValueError, match="not an acked-seqs table"):
        SharedAckedSeqs(path)


def _note_many(path: str, space: str, seqs: range) -> None:
    acked = SharedAckedSeqs(Path(path))
    for seq in seqs:
        acked.note(space, seq)


def test_processes_noting_at_once_keep_the_highest(table: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_note_many, args=(str(table), f"space-{i % 3}", range(i, 3000, 4)))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    acked = SharedAckedSeqs(table)
    # space-0 from processes 0 and 3 (…, 2996 and …, 2999), space-1 and space-2 alone
    assert [acked.get(f"space-{i}") for i in range(3)] == [2999, 2997, 2998]


def test_shared_state_names_its_directory_and_removes_it() -> None:
    with shared_state(max_spaces=100) as env:
        root = Path(env[SHARED_DIR_ENV])
        assert (root / ACKED_FILE).is_file()
        assert Path(env[PROMETHEUS_DIR_ENV]).is_dir()
    assert not root.exists()


def _record(space: str) -> SpaceRecord:
    return SpaceRecord.model_validate(
        {"id": space, "dim": 4, "created_at": "2026-01-01T00:00:00Z", "embedder": "hash-ngram-v1"}
    )
