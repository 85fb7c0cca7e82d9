"""Field numbers never change: ``proto/engram/v1/fields.lock`` lists every field
the .proto files have had (``engram.v1.Message.field = N``), and
:func:`problems` says where the messages now break it: a field whose number
changed, or a field gone without its number and name ``reserved`` in its
message. ``python -m engram_proto.fields`` (run by ``make proto``) appends the
fields that are new; it never rewrites an entry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.descriptor_pb2 import DescriptorProto

from engram_proto.generate import PROTO_DIR

LOCK = PROTO_DIR / "engram" / "v1" / "fields.lock"
HEADER = (
    "# Every field engram.v1 has had and its number (`make proto` appends new ones).\n"
    '# Never edit a line: retire a field with `reserved N; reserved "name";` in its message.\n'
)


def _files() -> list[FileDescriptor]:
    from engram_proto.v1 import (
        commands_pb2,
        events_pb2,
        memory_pb2,
        queries_pb2,
        service_pb2,
        spaces_pb2,
        transfer_pb2,
    )

    modules = (memory_pb2, commands_pb2, events_pb2, queries_pb2, spaces_pb2, transfer_pb2)
    return [m.DESCRIPTOR for m in (*modules, service_pb2)]


def _messages(messages: Iterator[Descriptor]) -> Iterator[Descriptor]:
    for message in messages:
        if message.GetOptions().map_entry:
            continue
        yield message
        yield from _messages(iter(message.nested_types))


def current() -> dict[str, int]:
    """``{"engram.v1.Message.field": number}`` of the generated modules."""
    out = {}
    for file in _files():
        for message in _messages(iter(file.message_types_by_name.values())):
            for field in message.fields:
                out[f"{message.full_name}.{field.name}"] = field.number
    return out


def _reserved(full_name: str) -> tuple[set[int], set[str]]:
    for file in _files():
        for message in _messages(iter(file.message_types_by_name.values())):
            if message.full_name == full_name:
                proto = DescriptorProto()
                message.CopyToProto(proto)  # type: ignore[no-untyped-call]
                numbers = {n for r in proto.reserved_range for n in range(r.start, r.end)}
                return numbers, set(proto.reserved_name)
    return set(), set()


def read_lock(path: Path = LOCK) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.strip() and not line.startswith("#"):
            name, _, number = line.partition(" = ")
            out[name.strip()] = int(number)
    return out


def problems(lock: dict[str, int], now: dict[str, int]) -> list[str]:
    """Where ``now`` breaks ``lock`` (see the module's docstring)."""
    out = []
    for name, number in lock.items():
        if name in now:
            if now[name] != number:
                out.append(f"{name}: number {now[name]}, was {number}")
            continue
        message, _, field = name.rpartition(".")
        numbers, names = _reserved(message)
        if number not in numbers or field not in names:
            out.append(f"{name} = {number} is gone: reserve {number} and {field!r} in {message}")
        taken = [n for n, k in now.items() if k == number and n.rpartition(".")[0] == message]
        out.extend(f"{n} reuses {name}'s number {number}" for n in taken)
    return out


def update(path: Path = LOCK) -> list[str]:
    """Append the new fields to the lock (refused while :func:`problems` finds any);
    the lines added."""
    lock, now = read_lock(path), current()
    found = problems(lock, now)
    if found:
        raise SystemExit("field numbers changed:\n  " + "\n  ".join(found))
    new = [f"{name} = {number}" for name, number in now.items() if name not in lock]
    if new or not path.exists():
        text = path.read_text() if path.exists() else HEADER
        path.write_text(text + "".join(f"{line}\n" for line in new))
    return new


if __name__ == "__main__":
    for line in update():
        print(f"fields.lock: + {line}")
    sys.exit(0)
