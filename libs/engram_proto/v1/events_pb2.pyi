from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class MemoryStored(_message.Message):
    __slots__ = ("schema_version", "space", "seq", "memory_id", "command_id", "replaced", "replaced_seq")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_SEQ_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    space: str
    seq: int
    memory_id: str
    command_id: str
    replaced: bool
    replaced_seq: int
    def __init__(self, schema_version: _Optional[int] = ..., space: _Optional[str] = ..., seq: _Optional[int] = ..., memory_id: _Optional[str] = ..., command_id: _Optional[str] = ..., replaced: _Optional[bool] = ..., replaced_seq: _Optional[int] = ...) -> None: ...

class MemoryForgotten(_message.Message):
    __slots__ = ("schema_version", "space", "seq", "memory_id", "command_id", "existed", "erased_seq")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    ERASED_SEQ_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    space: str
    seq: int
    memory_id: str
    command_id: str
    existed: bool
    erased_seq: int
    def __init__(self, schema_version: _Optional[int] = ..., space: _Optional[str] = ..., seq: _Optional[int] = ..., memory_id: _Optional[str] = ..., command_id: _Optional[str] = ..., existed: _Optional[bool] = ..., erased_seq: _Optional[int] = ...) -> None: ...

class MemoriesLinked(_message.Message):
    __slots__ = ("schema_version", "space", "seq", "command_id", "source", "target", "weight", "kind")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    space: str
    seq: int
    command_id: str
    source: str
    target: str
    weight: float
    kind: str
    def __init__(self, schema_version: _Optional[int] = ..., space: _Optional[str] = ..., seq: _Optional[int] = ..., command_id: _Optional[str] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., weight: _Optional[float] = ..., kind: _Optional[str] = ...) -> None: ...

class MemoriesActivated(_message.Message):
    __slots__ = ("schema_version", "space", "seq", "command_id", "memory_ids")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_IDS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    space: str
    seq: int
    command_id: str
    memory_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, schema_version: _Optional[int] = ..., space: _Optional[str] = ..., seq: _Optional[int] = ..., command_id: _Optional[str] = ..., memory_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class MemoriesConsolidated(_message.Message):
    __slots__ = ("schema_version", "space", "seq", "command_id", "memory_id", "members")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    space: str
    seq: int
    command_id: str
    memory_id: str
    members: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, schema_version: _Optional[int] = ..., space: _Optional[str] = ..., seq: _Optional[int] = ..., command_id: _Optional[str] = ..., memory_id: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ...) -> None: ...

class MessageRejected(_message.Message):
    __slots__ = ("schema_version", "space", "seq", "reason", "command_id")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    space: str
    seq: int
    reason: str
    command_id: str
    def __init__(self, schema_version: _Optional[int] = ..., space: _Optional[str] = ..., seq: _Optional[int] = ..., reason: _Optional[str] = ..., command_id: _Optional[str] = ...) -> None: ...

class EventsGap(_message.Message):
    __slots__ = ("space", "after", "first_kept")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    FIRST_KEPT_FIELD_NUMBER: _ClassVar[int]
    space: str
    after: int
    first_kept: int
    def __init__(self, space: _Optional[str] = ..., after: _Optional[int] = ..., first_kept: _Optional[int] = ...) -> None: ...
