"""proto/engram/v1 describes the same messages as the pydantic models: same
names, same fields, compatible types. (A small parser of the subset of proto3
the files use: no protoc needed.)"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from engram_contract import messages
from engram_contract.verbs import COMMANDS, EVENTS, QUERIES

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"
FILES = sorted((PROTO_DIR / "engram" / "v1").glob("*.proto"))
#: messages of the proto contract that no pydantic model mirrors
PROTO_ONLY = {"QueryErrorReply"}
#: the gRPC service's file: its request/response envelopes mirror no model (the
#: messages they carry do, and are checked here)
SERVICE_FILE = "service.proto"

INTS = {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64"}
SCALARS = INTS | {"double", "float", "bool", "string", "bytes"}
TIMESTAMP = "google.protobuf.Timestamp"


@dataclass(frozen=True)
class ProtoField:
    name: str
    type: str  # scalar, message name, or "map"
    number: int
    label: str  # "", "optional" or "repeated"
    key: str = ""  # map key and value types
    value: str = ""

    @property
    def has_presence(self) -> bool:
        return self.label == "optional" or (self.type not in SCALARS and self.type != "map")


_FIELD = re.compile(
    r"^(?:(optional|repeated)\s+)?"
    r"(map\s*<\s*(\w+)\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;$"
)


def parse(text: str) -> dict[str, dict[str, ProtoField]]:
    """``{message: {field: ProtoField}}`` of one file (flat messages only)."""
    text = re.sub(r"//[^\n]*", "", text)
    out: dict[str, dict[str, ProtoField]] = {}
    for name, body in re.findall(r"\bmessage\s+(\w+)\s*\{([^{}]*)\}", text):
        fields: dict[str, ProtoField] = {}
        for line in filter(None, (ln.strip() for ln in body.split(";"))):
            if line.startswith("reserved "):
                continue  # a retired field (fields.lock keeps its number)
            m = _FIELD.match(line + ";")
            assert m, f"{name}: cannot parse {line!r}"
            label, typ, key, value, fname, number = m.groups()
            is_map = typ.startswith("map")
            assert fname not in fields, f"{name}.{fname} twice"
            fields[fname] = ProtoField(
                fname, "map" if is_map else typ, int(number), label or "", key or "", value or ""
            )
        numbers = [f.number for f in fields.values()]
        assert len(set(numbers)) == len(numbers), f"{name}: field numbers repeat"
        assert name not in out, f"message {name} twice"
        out[name] = fields
    return out


@pytest.fixture(scope="module")
def proto() -> dict[str, dict[str, ProtoField]]:
    assert FILES, f"no .proto files under {PROTO_DIR}"
    found: dict[str, dict[str, ProtoField]] = {}
    for path in FILES:
        text = path.read_text()
        assert re.search(r'^syntax\s*=\s*"proto3";', text, re.M), path
        assert re.search(r"^package\s+engram\.v1;", text, re.M), path
        for imp in re.findall(r'^import\s+"([^"]+)";', text, re.M):
            assert imp.startswith("google/protobuf/") or (PROTO_DIR / imp).is_file(), imp
        parsed = parse(text)
        assert not set(parsed) & set(found), f"{path.name} redefines {set(parsed) & set(found)}"
        if path.name == SERVICE_FILE:
            PROTO_ONLY.update(parsed)
        found.update(parsed)
    return found


def _contract_models() -> set[type[BaseModel]]:
    models: set[type[BaseModel]] = {messages.Memory, messages.MemoryIn, messages.QueryError}
    models |= {c.model for c in COMMANDS.values()} | {e.model for e in EVENTS.values()}
    for request, response in ((q.request, q.response) for q in QUERIES.values()):
        models |= {request, response}
    return models


def _strip(annotation: Any) -> tuple[Any, bool]:
    """(the type without ``Annotated``/``None``, whether ``None`` is allowed)."""
    nullable = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            nullable = nullable or len(args) < len(get_args(annotation))
            assert len(args) == 1, f"unions of several types have no proto form: {annotation}"
            annotation = args[0]
        else:
            return annotation, nullable


def _scalar_ok(annotation: Any, proto_type: str, field: str) -> bool:
    annotation, _ = _strip(annotation)
    if get_origin(annotation) is Literal:
        kinds = {type(v) for v in get_args(annotation)}
        assert len(kinds) == 1
        annotation = kinds.pop()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return proto_type == annotation.__name__
    if annotation is bool:
        return proto_type == "bool"
    if annotation is int:
        return proto_type in INTS
    if annotation is float:
        return proto_type in {"double", "float"}
    if annotation is str:  # base64 fields are bytes in proto (base64 in its JSON mapping)
        return proto_type == "string" or (field.endswith("_b64") and proto_type == "bytes")
    if annotation is datetime:
        return proto_type == TIMESTAMP
    raise AssertionError(f"no proto mapping for {annotation!r}")


def _problems(model: type[BaseModel], fields: dict[str, ProtoField]) -> list[str]:
    problems = []
    for name, info in model.model_fields.items():
        pf = fields.get(name)
        if pf is None:
            continue
        annotation, nullable = _strip(info.annotation)
        origin = get_origin(annotation)
        where = f"{model.__name__}.{name}"
        if origin is list:
            (item,) = get_args(annotation)
            if pf.label != "repeated" or not _scalar_ok(item, pf.type, name):
                problems.append(f"{where}: list[{item}] vs {pf.label} {pf.type}")
        elif origin is dict:
            key, value = get_args(annotation)
            if not (
                pf.type == "map"
                and _scalar_ok(key, pf.key, name)
                and _scalar_ok(value, pf.value, name)
            ):
                problems.append(f"{where}: dict vs {pf.type}<{pf.key}, {pf.value}>")
        else:
            if pf.label == "repeated" or not _scalar_ok(annotation, pf.type, name):
                problems.append(f"{where}: {annotation} vs {pf.label} {pf.type}")
            if nullable and not pf.has_presence:
                problems.append(f"{where}: may be null, so the proto field needs `optional`")
            if info.is_required() and not nullable and pf.label == "optional":
                problems.append(f"{where}: required, but `optional` in proto")
    return problems


def test_every_contract_message_is_in_proto(
    proto: dict[str, dict[str, ProtoField]],
) -> None:
    missing = {m.__name__ for m in _contract_models()} - set(proto)
    assert not missing, f"messages without a proto definition: {sorted(missing)}"


def test_every_proto_message_mirrors_a_pydantic_model(
    proto: dict[str, dict[str, ProtoField]],
) -> None:
    for name in set(proto) - PROTO_ONLY:
        model = getattr(messages, name, None)
        assert isinstance(model, type) and issubclass(model, BaseModel), (
            f"proto message {name} has no pydantic model of that name in engram_contract.messages"
        )


@pytest.mark.parametrize("name", sorted({p.stem for p in FILES}))
def test_file_parses(name: str) -> None:
    assert parse((PROTO_DIR / "engram" / "v1" / f"{name}.proto").read_text())


def test_fields_and_types_agree(proto: dict[str, dict[str, ProtoField]]) -> None:
    problems = []
    for name, fields in sorted(proto.items()):
        if name in PROTO_ONLY:
            continue
        model: type[BaseModel] = getattr(messages, name)
        pydantic_fields, proto_fields = set(model.model_fields), set(fields)
        if pydantic_fields != proto_fields:
            problems.append(
                f"{name}: only in pydantic {sorted(pydantic_fields - proto_fields)}, "
                f"only in proto {sorted(proto_fields - pydantic_fields)}"
            )
        problems += _problems(model, fields)
    assert not problems, "\n".join(problems)


def test_every_request_names_its_space(proto: dict[str, dict[str, ProtoField]]) -> None:
    requests = [*(c.model for c in COMMANDS.values()), *(q.request for q in QUERIES.values())]
    for model in requests:
        field = proto[model.__name__].get("memory_space_id")
        assert field is not None and field.type == "string" and field.label == "optional", model
        assert "memory_space_id" in model.model_fields


def test_error_reply_envelope(proto: dict[str, dict[str, ProtoField]]) -> None:
    envelope = messages.error_reply(400, "t", "d")
    assert set(proto["QueryErrorReply"]) == set(envelope)
    assert proto["QueryErrorReply"]["error"].type == "QueryError"


def test_parser_reads_what_it_claims() -> None:
    parsed = parse(
        """message A {
          // a comment; with a semicolon
          optional string a = 1;
          repeated B b = 2;
          map<string, string> m = 3;  // trailing
          google.protobuf.Timestamp t = 4;
        }"""
    )
    fields = parsed["A"]
    assert fields["a"] == ProtoField("a", "string", 1, "optional")
    assert fields["b"].label == "repeated" and fields["b"].type == "B"
    assert (fields["m"].type, fields["m"].key, fields["m"].value) == ("map", "string", "string")
    assert fields["t"].type == TIMESTAMP and fields["t"].has_presence
