"""``make proto``: generate :mod:`engram_proto.v1` from ``proto/engram/v1``.

protoc (``grpcio-tools``) writes ``engram/v1/<name>_pb2.py`` (messages),
``<name>_pb2.pyi`` (their types, for mypy) and ``service_pb2_grpc.py`` (the
client stub and servicer base). The generated imports name the .proto path
(``from engram.v1 import memory_pb2``); they are rewritten to this package
(``from engram_proto.v1 import memory_pb2``), the only change made to protoc's
output. ``python -m engram_proto.generate [PROTO_DIR] [OUT_DIR]``.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

PACKAGE = "engram_proto.v1"
HERE = Path(__file__).resolve().parent
#: the repository's proto directory (the package is installed editable from it)
PROTO_DIR = HERE.parents[1] / "proto"
_IMPORT = re.compile(r"^(from|import) engram\.v1(\.| import)", re.M)


def _rewrite(text: str) -> str:
    return _IMPORT.sub(lambda m: f"{m[1]} {PACKAGE}{m[2]}", text)


def generate(proto_dir: Path = PROTO_DIR, out_dir: Path = HERE / "v1") -> list[Path]:
    """Write the generated modules of every ``engram/v1/*.proto`` under
    ``proto_dir`` into ``out_dir`` (replacing what was there); the files written."""
    from grpc_tools import protoc  # a dev dependency: only generating needs it

    include = Path(protoc.__file__).resolve().parent / "_proto"  # google/protobuf/*.proto
    sources = sorted((proto_dir / "engram" / "v1").glob("*.proto"))
    if not sources:
        raise FileNotFoundError(f"no .proto files under {proto_dir / 'engram' / 'v1'}")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(p.relative_to(proto_dir)) for p in sources),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        generated = Path(tmp) / "engram" / "v1"
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob("*_pb2*.py*"):
            old.unlink()
        written = []
        for path in sorted(generated.iterdir()):
            text = path.read_text()
            if path.name.endswith("_pb2_grpc.py") and "class " not in text:
                continue  # a file without a service: protoc writes an empty module
            target = out_dir / path.name
            target.write_text(_rewrite(text))
            written.append(target)
        init = out_dir / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated from proto/engram/v1 by `make proto`; do not edit."""\n')
    return written


def main(argv: list[str]) -> int:
    proto_dir = Path(argv[0]) if argv else PROTO_DIR
    out_dir = Path(argv[1]) if len(argv) > 1 else HERE / "v1"
    for path in generate(proto_dir, out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
