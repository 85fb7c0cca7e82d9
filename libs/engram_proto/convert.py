"""Protobuf messages ↔ the JSON documents of the contract (the pydantic models'
field names and shapes), by the messages' descriptors.

``to_doc``: a request as the document the pydantic models validate. A field with
presence (``optional``, a message, a oneof member) is in it only when set, so the
model's default applies when it is not; a field without presence always is (its
proto3 default is its value: ``weight = 0`` is a weight of 0). Repeated fields
and maps are in it when not empty. Timestamps become RFC 3339 strings, ``bytes``
base64 (as in the JSON wire form), 64-bit integers stay integers.

``to_message``: a worker's JSON answer as a message; ``null`` is unset, keys the
message does not have are dropped (an older client of a newer worker).

``check``: what JSON's schema validation catches and protobuf's parser lets
through, named by field path: a field sent with another wire type than its own
(parsed as an unknown field: ``k`` sent as a string), a field number the message
does not have (as unknown JSON keys are refused), a timestamp out of range.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.unknown_fields import UnknownFieldSet  # type: ignore[import-not-found]

M = TypeVar("M", bound=Message)
TIMESTAMP = "google.protobuf.Timestamp"
_BYTES = FieldDescriptor.TYPE_BYTES

# how one field is read: (name, presence, repeated, map, reader of one value)
_Reader = tuple[str, bool, bool, bool, Callable[[Any], Any]]


def _identity(value: Any) -> Any:
    return value


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _timestamp(value: Timestamp) -> str:
    # as ToJsonString (in Python, slow) but to the microsecond, as the models keep it
    moment = _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
    return moment.isoformat().replace("+00:00", "Z")


@cache
def _readers(descriptor: Descriptor) -> tuple[_Reader, ...]:
    readers = []
    for field in descriptor.fields:
        sub = field.message_type
        is_map = sub is not None and sub.GetOptions().map_entry
        read: Callable[[Any], Any] = _identity
        if is_map:
            read = dict
        elif sub is not None:
            read = _timestamp if sub.full_name == TIMESTAMP else to_doc
        elif field.type == _BYTES:
            read = _b64
        readers.append((field.name, field.has_presence, field.is_repeated, is_map, read))
    return tuple(readers)


def to_doc(message: Message) -> dict[str, Any]:
    """``message`` as the contract's JSON document (see the module docstring)."""
    doc: dict[str, Any] = {}
    for name, presence, repeated, is_map, read in _readers(message.DESCRIPTOR):
        if is_map:
            value = getattr(message, name)
            if value:
                doc[name] = dict(value)
        elif repeated:
            values = getattr(message, name)
            if values:
                doc[name] = [read(v) for v in values] if read is not _identity else list(values)
        elif presence:
            if message.HasField(name):
                doc[name] = read(getattr(message, name))
        else:
            doc[name] = read(getattr(message, name))
    return doc


# -- JSON document → message ---------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Plan:
    """What :func:`_kwargs` does with a message's keys: keeps ``known`` ones,
    converts ``timestamps`` and ``raw_bytes``, recurses into ``messages``."""

    known: frozenset[str]
    timestamps: tuple[str, ...]
    raw_bytes: tuple[str, ...]
    messages: tuple[tuple[str, Descriptor], ...]


@cache
def _plan(descriptor: Descriptor) -> _Plan:
    timestamps, raw_bytes, messages = [], [], []
    for field in descriptor.fields:
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            continue  # a map<string, string>: as it is
        if sub is not None and sub.full_name == TIMESTAMP:
            timestamps.append(field.name)
        elif sub is not None:
            messages.append((field.name, sub))
        elif field.type == _BYTES:
            raw_bytes.append(field.name)
    known = frozenset(f.name for f in descriptor.fields)
    return _Plan(known, tuple(timestamps), tuple(raw_bytes), tuple(messages))


@lru_cache(maxsize=8192)
def _seconds_nanos(value: str) -> dict[str, int]:
    """An RFC 3339 string as Timestamp's fields (``datetime.fromisoformat`` is C;
    protobuf's ``FromJsonString`` is Python and ~400x slower). Cached: the same
    memories come back recall after recall, with the same timestamps (the dict is
    only read by the constructors)."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return {"seconds": delta.days * 86_400 + delta.seconds, "nanos": delta.microseconds * 1000}


def _kwargs(descriptor: Descriptor, doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` as the keyword arguments of the message's constructor: nested
    messages as dicts (upb builds them in the one call), timestamps as seconds
    and nanos, bytes decoded; nulls and unknown keys left out."""
    plan = _plan(descriptor)
    out = {k: v for k, v in doc.items() if v is not None and k in plan.known}
    for key in plan.timestamps:
        value = out.get(key)
        if value is not None:
            out[key] = (
                [_seconds_nanos(v) for v in value]
                if isinstance(value, list)
                else _seconds_nanos(value)
            )
    for key in plan.raw_bytes:
        value = out.get(key)
        if value is not None:
            out[key] = (
                [base64.b64decode(v) for v in value]
                if isinstance(value, list)
                else base64.b64decode(value)
            )
    for key, sub in plan.messages:
        value = out.get(key)
        if value is not None:
            out[key] = (
                [_kwargs(sub, v) for v in value] if isinstance(value, list) else _kwargs(sub, value)
            )
    return out


def to_message(cls: type[M], doc: Mapping[str, Any]) -> M:
    """The message of class ``cls`` holding ``doc`` (see the module docstring)."""
    descriptor: Descriptor = cls.DESCRIPTOR  # type: ignore[assignment]
    return cls(**_kwargs(descriptor, doc))


# -- checking a request --------------------------------------------------------


class FieldProblem(ValueError):
    """A field of a message that cannot be read as its type (see :func:`check`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_WIRE = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "group", 4: "group", 5: "32-bit"}
_TYPE_NAMES = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in vars(FieldDescriptor).items()
    if name.startswith("TYPE_") and isinstance(value, int)
}
#: Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def _type_name(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        return str(field.message_type.full_name)
    return str(_TYPE_NAMES.get(field.type, "?"))


def check(message: Message, path: str = "") -> None:
    """Raise :class:`FieldProblem` naming the first field of ``message`` (or of a
    message in it) that was sent with the wrong wire type or is not a field of
    it, or a timestamp out of range."""
    unknown = UnknownFieldSet(message)
    if len(unknown):
        first = unknown[0]
        field = message.DESCRIPTOR.fields_by_number.get(first.field_number)
        if field is not None:
            raise FieldProblem(
                path + field.name,
                f"expected {_type_name(field)}, got a {_WIRE.get(first.wire_type, '?')} value",
            )
        raise FieldProblem(
            path + f"#{first.field_number}",
            f"field number {first.field_number} is not in {message.DESCRIPTOR.full_name}",
        )
    if message.DESCRIPTOR.full_name == TIMESTAMP:
        seconds, nanos = getattr(message, "seconds", 0), getattr(message, "nanos", 0)
        if not _MIN_SECONDS <= seconds <= _MAX_SECONDS or not 0 <= nanos <= 999_999_999:
            raise FieldProblem(path.rstrip("."), "timestamp out of range (years 1-9999)")
        return
    for field, value in message.ListFields():
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        if field.is_repeated:
            for i, item in enumerate(value):
                check(item, f"{path}{field.name}[{i}].")
        else:
            check(value, f"{path}{field.name}.")
