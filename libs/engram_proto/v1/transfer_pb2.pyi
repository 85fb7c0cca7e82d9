import datetime

from engram_proto.v1 import spaces_pb2 as _spaces_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SpaceSettings(_message.Message):
    __slots__ = ("dim", "metric", "embedder", "links", "decay", "consolidation")
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    DECAY_FIELD_NUMBER: _ClassVar[int]
    CONSOLIDATION_FIELD_NUMBER: _ClassVar[int]
    dim: int
    metric: str
    embedder: str
    links: _spaces_pb2.LinkSettings
    decay: _spaces_pb2.DecaySettings
    consolidation: _spaces_pb2.ConsolidationSettings
    def __init__(self, dim: _Optional[int] = ..., metric: _Optional[str] = ..., embedder: _Optional[str] = ..., links: _Optional[_Union[_spaces_pb2.LinkSettings, _Mapping]] = ..., decay: _Optional[_Union[_spaces_pb2.DecaySettings, _Mapping]] = ..., consolidation: _Optional[_Union[_spaces_pb2.ConsolidationSettings, _Mapping]] = ...) -> None: ...

class ExportHeader(_message.Message):
    __slots__ = ("engram_export", "space", "exported_at", "applied_seq", "tags", "settings")
    ENGRAM_EXPORT_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    engram_export: int
    space: str
    exported_at: _timestamp_pb2.Timestamp
    applied_seq: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    settings: SpaceSettings
    def __init__(self, engram_export: _Optional[int] = ..., space: _Optional[str] = ..., exported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., applied_seq: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., settings: _Optional[_Union[SpaceSettings, _Mapping]] = ...) -> None: ...

class ExportEnd(_message.Message):
    __slots__ = ("memories", "links")
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    memories: int
    links: int
    def __init__(self, memories: _Optional[int] = ..., links: _Optional[int] = ...) -> None: ...

class ImportResult(_message.Message):
    __slots__ = ("space", "created", "memories", "links", "seq")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    space: str
    created: bool
    memories: int
    links: int
    seq: int
    def __init__(self, space: _Optional[str] = ..., created: _Optional[bool] = ..., memories: _Optional[int] = ..., links: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...
