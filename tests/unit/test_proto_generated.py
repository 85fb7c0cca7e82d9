"""libs/engram_proto/v1 is what `make proto` makes of proto/engram/v1 now: the
.proto files are generated again into a temporary directory and every
generated file must equal the committed one (and no committed one may be left
over). The generated modules import from the package and describe the
service the gateway serves. No field's number changes: proto/engram/v1/fields.lock
keeps every number a field has had."""

from __future__ import annotations

from pathlib import Path

from engram_proto import SERVICE
from engram_proto.fields import current, problems, read_lock
from engram_proto.generate import PROTO_DIR, generate

COMMITTED = Path(__file__).resolve().parents[2] / "libs" / "engram_proto" / "v1"


def test_generated_code_matches_the_proto_files(tmp_path: Path) -> None:
    fresh = {p.name: p.read_text() for p in generate(PROTO_DIR, tmp_path)}
    committed = {p.name: p.read_text() for p in COMMITTED.glob("*_pb2*.py*")}
    stale = sorted(n for n in fresh if committed.get(n) != fresh[n])
    assert not stale, f"out of date with proto/engram/v1 (run `make proto`): {stale}"
    left_over = sorted(set(committed) - set(fresh))
    assert not left_over, f"generated from no .proto file any more: {left_over}"


def test_generated_modules_import_the_package_and_serve_the_memory_service() -> None:
    from engram_proto.v1 import service_pb2, service_pb2_grpc

    service = service_pb2.DESCRIPTOR.services_by_name["MemoryService"]
    assert service.full_name == SERVICE
    assert hasattr(service_pb2_grpc, "MemoryServiceStub")
    assert service_pb2.DESCRIPTOR.name == "engram/v1/service.proto"
    for path in COMMITTED.glob("*.py*"):
        assert "from engram.v1" not in path.read_text(), path.name


def test_field_numbers_never_change() -> None:
    lock, now = read_lock(), current()
    assert not problems(lock, now), "\n".join(problems(lock, now))
    new = sorted(set(now) - set(lock))
    assert not new, f"fields not in proto/engram/v1/fields.lock (run `make proto`): {new}"


def test_a_renumbered_or_dropped_field_is_caught() -> None:
    now = current()
    assert now["engram.v1.MemoryIn.content"] == 1
    renumbered = problems({"engram.v1.MemoryIn.content": 9}, now)
    assert renumbered == ["engram.v1.MemoryIn.content: number 1, was 9"]
    (gone,) = problems({"engram.v1.MemoryIn.retired": 40}, now)
    assert "reserve 40 and 'retired' in engram.v1.MemoryIn" in gone
    reused = problems({"engram.v1.MemoryIn.old_content": 1}, now)
    assert "engram.v1.MemoryIn.content reuses engram.v1.MemoryIn.old_content's number 1" in reused
