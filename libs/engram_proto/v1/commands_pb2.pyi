import datetime

from engram_proto.v1 import memory_pb2 as _memory_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemoryHistory(_message.Message):
    __slots__ = ("created_at", "recalls", "last_recall")
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RECALLS_FIELD_NUMBER: _ClassVar[int]
    LAST_RECALL_FIELD_NUMBER: _ClassVar[int]
    created_at: _timestamp_pb2.Timestamp
    recalls: int
    last_recall: _timestamp_pb2.Timestamp
    def __init__(self, created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recalls: _Optional[int] = ..., last_recall: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RememberCommand(_message.Message):
    __slots__ = ("schema_version", "command_id", "memory", "memory_space_id", "history")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    command_id: str
    memory: _memory_pb2.MemoryIn
    memory_space_id: str
    history: MemoryHistory
    def __init__(self, schema_version: _Optional[int] = ..., command_id: _Optional[str] = ..., memory: _Optional[_Union[_memory_pb2.MemoryIn, _Mapping]] = ..., memory_space_id: _Optional[str] = ..., history: _Optional[_Union[MemoryHistory, _Mapping]] = ...) -> None: ...

class ForgetCommand(_message.Message):
    __slots__ = ("schema_version", "command_id", "memory_id", "memory_space_id")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    command_id: str
    memory_id: str
    memory_space_id: str
    def __init__(self, schema_version: _Optional[int] = ..., command_id: _Optional[str] = ..., memory_id: _Optional[str] = ..., memory_space_id: _Optional[str] = ...) -> None: ...

class LinkCommand(_message.Message):
    __slots__ = ("schema_version", "command_id", "source", "target", "weight", "kind", "memory_space_id")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    command_id: str
    source: str
    target: str
    weight: float
    kind: str
    memory_space_id: str
    def __init__(self, schema_version: _Optional[int] = ..., command_id: _Optional[str] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., weight: _Optional[float] = ..., kind: _Optional[str] = ..., memory_space_id: _Optional[str] = ...) -> None: ...

class ReinforceCommand(_message.Message):
    __slots__ = ("schema_version", "command_id", "memory_ids", "memory_space_id")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_IDS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    command_id: str
    memory_ids: _containers.RepeatedScalarFieldContainer[str]
    memory_space_id: str
    def __init__(self, schema_version: _Optional[int] = ..., command_id: _Optional[str] = ..., memory_ids: _Optional[_Iterable[str]] = ..., memory_space_id: _Optional[str] = ...) -> None: ...

class ConsolidateCommand(_message.Message):
    __slots__ = ("schema_version", "command_id", "memory_id", "members", "memory_space_id", "history")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    command_id: str
    memory_id: str
    members: _containers.RepeatedScalarFieldContainer[str]
    memory_space_id: str
    history: MemoryHistory
    def __init__(self, schema_version: _Optional[int] = ..., command_id: _Optional[str] = ..., memory_id: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ..., memory_space_id: _Optional[str] = ..., history: _Optional[_Union[MemoryHistory, _Mapping]] = ...) -> None: ...
