from engram_proto.v1 import events_pb2 as _events_pb2
from engram_proto.v1 import memory_pb2 as _memory_pb2
from engram_proto.v1 import queries_pb2 as _queries_pb2
from engram_proto.v1 import spaces_pb2 as _spaces_pb2
from engram_proto.v1 import transfer_pb2 as _transfer_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateSpaceRequest(_message.Message):
    __slots__ = ("space",)
    SPACE_FIELD_NUMBER: _ClassVar[int]
    space: _spaces_pb2.CreateSpace
    def __init__(self, space: _Optional[_Union[_spaces_pb2.CreateSpace, _Mapping]] = ...) -> None: ...

class CreateSpaceResponse(_message.Message):
    __slots__ = ("space", "created")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    space: _spaces_pb2.SpaceRecord
    created: bool
    def __init__(self, space: _Optional[_Union[_spaces_pb2.SpaceRecord, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ListSpacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSpacesResponse(_message.Message):
    __slots__ = ("spaces",)
    SPACES_FIELD_NUMBER: _ClassVar[int]
    spaces: _containers.RepeatedCompositeFieldContainer[_spaces_pb2.SpaceRecord]
    def __init__(self, spaces: _Optional[_Iterable[_Union[_spaces_pb2.SpaceRecord, _Mapping]]] = ...) -> None: ...

class GetSpaceRequest(_message.Message):
    __slots__ = ("memory_space_id",)
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    def __init__(self, memory_space_id: _Optional[str] = ...) -> None: ...

class GetSpaceResponse(_message.Message):
    __slots__ = ("space", "memories", "applied_seq")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    space: _spaces_pb2.SpaceRecord
    memories: int
    applied_seq: int
    def __init__(self, space: _Optional[_Union[_spaces_pb2.SpaceRecord, _Mapping]] = ..., memories: _Optional[int] = ..., applied_seq: _Optional[int] = ...) -> None: ...

class DeleteSpaceRequest(_message.Message):
    __slots__ = ("memory_space_id",)
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    def __init__(self, memory_space_id: _Optional[str] = ...) -> None: ...

class DeleteSpaceResponse(_message.Message):
    __slots__ = ("id", "status")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class RememberRequest(_message.Message):
    __slots__ = ("memory_space_id", "memory", "idempotency_key")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    memory: _memory_pb2.MemoryIn
    idempotency_key: str
    def __init__(self, memory_space_id: _Optional[str] = ..., memory: _Optional[_Union[_memory_pb2.MemoryIn, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RememberBatchRequest(_message.Message):
    __slots__ = ("memory_space_id", "memories", "idempotency_key")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    memories: _containers.RepeatedCompositeFieldContainer[_memory_pb2.MemoryIn]
    idempotency_key: str
    def __init__(self, memory_space_id: _Optional[str] = ..., memories: _Optional[_Iterable[_Union[_memory_pb2.MemoryIn, _Mapping]]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RememberResponse(_message.Message):
    __slots__ = ("ids", "seq")
    IDS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    seq: int
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., seq: _Optional[int] = ...) -> None: ...

class ForgetRequest(_message.Message):
    __slots__ = ("memory_space_id", "memory_id", "idempotency_key")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    memory_id: str
    idempotency_key: str
    def __init__(self, memory_space_id: _Optional[str] = ..., memory_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class ForgetManyRequest(_message.Message):
    __slots__ = ("memory_space_id", "ids", "idempotency_key")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    idempotency_key: str
    def __init__(self, memory_space_id: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ForgetManyResponse(_message.Message):
    __slots__ = ("seq", "count")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    count: int
    def __init__(self, seq: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class LinkRequest(_message.Message):
    __slots__ = ("memory_space_id", "link", "idempotency_key")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    link: _memory_pb2.LinkIn
    idempotency_key: str
    def __init__(self, memory_space_id: _Optional[str] = ..., link: _Optional[_Union[_memory_pb2.LinkIn, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class LinkResponse(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class GetMemoryRequest(_message.Message):
    __slots__ = ("memory_space_id", "memory_id", "include_embedding")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    memory_id: str
    include_embedding: bool
    def __init__(self, memory_space_id: _Optional[str] = ..., memory_id: _Optional[str] = ..., include_embedding: _Optional[bool] = ...) -> None: ...

class ListMemoriesRequest(_message.Message):
    __slots__ = ("memory_space_id", "limit", "cursor", "include_embedding")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    limit: int
    cursor: str
    include_embedding: bool
    def __init__(self, memory_space_id: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., include_embedding: _Optional[bool] = ...) -> None: ...

class ExportSpaceRequest(_message.Message):
    __slots__ = ("memory_space_id", "tags")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, memory_space_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportItem(_message.Message):
    __slots__ = ("header", "memory", "end")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    header: _transfer_pb2.ExportHeader
    memory: _queries_pb2.ExportedMemory
    end: _transfer_pb2.ExportEnd
    def __init__(self, header: _Optional[_Union[_transfer_pb2.ExportHeader, _Mapping]] = ..., memory: _Optional[_Union[_queries_pb2.ExportedMemory, _Mapping]] = ..., end: _Optional[_Union[_transfer_pb2.ExportEnd, _Mapping]] = ...) -> None: ...

class ImportRequest(_message.Message):
    __slots__ = ("memory_space_id", "create", "idempotency_key", "item")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    create: bool
    idempotency_key: str
    item: ExportItem
    def __init__(self, memory_space_id: _Optional[str] = ..., create: _Optional[bool] = ..., idempotency_key: _Optional[str] = ..., item: _Optional[_Union[ExportItem, _Mapping]] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("memory_space_id", "types", "last_event_id")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    types: _containers.RepeatedScalarFieldContainer[str]
    last_event_id: int
    def __init__(self, memory_space_id: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., last_event_id: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "kind", "stored", "forgotten", "linked", "activated", "consolidated", "rejected", "gap")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    LINKED_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    CONSOLIDATED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: str
    stored: _events_pb2.MemoryStored
    forgotten: _events_pb2.MemoryForgotten
    linked: _events_pb2.MemoriesLinked
    activated: _events_pb2.MemoriesActivated
    consolidated: _events_pb2.MemoriesConsolidated
    rejected: _events_pb2.MessageRejected
    gap: _events_pb2.EventsGap
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[str] = ..., stored: _Optional[_Union[_events_pb2.MemoryStored, _Mapping]] = ..., forgotten: _Optional[_Union[_events_pb2.MemoryForgotten, _Mapping]] = ..., linked: _Optional[_Union[_events_pb2.MemoriesLinked, _Mapping]] = ..., activated: _Optional[_Union[_events_pb2.MemoriesActivated, _Mapping]] = ..., consolidated: _Optional[_Union[_events_pb2.MemoriesConsolidated, _Mapping]] = ..., rejected: _Optional[_Union[_events_pb2.MessageRejected, _Mapping]] = ..., gap: _Optional[_Union[_events_pb2.EventsGap, _Mapping]] = ...) -> None: ...
