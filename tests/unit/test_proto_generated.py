"""libs/engram_proto/v1 is what `make proto` makes of proto/engram/v1 now: the
.proto files are generated again into a temporary directory and every
generated file must equal the committed one (and no committed one may be left
over). The generated modules import from the package and describe the
service the gateway serves."""

from __future__ import annotations

from pathlib import Path

from engram_proto import SERVICE
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
