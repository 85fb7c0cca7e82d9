import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LinkSettings(_message.Message):
    __slots__ = ("semantic_k", "semantic_threshold", "temporal_window_s", "temporal_max", "temporal_half_life_s", "temporal_weight")
    SEMANTIC_K_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_MAX_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_HALF_LIFE_S_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    semantic_k: int
    semantic_threshold: float
    temporal_window_s: float
    temporal_max: int
    temporal_half_life_s: float
    temporal_weight: float
    def __init__(self, semantic_k: _Optional[int] = ..., semantic_threshold: _Optional[float] = ..., temporal_window_s: _Optional[float] = ..., temporal_max: _Optional[int] = ..., temporal_half_life_s: _Optional[float] = ..., temporal_weight: _Optional[float] = ...) -> None: ...

class DecaySettings(_message.Message):
    __slots__ = ("fast_half_life_s", "slow_half_life_s", "settle_after")
    FAST_HALF_LIFE_S_FIELD_NUMBER: _ClassVar[int]
    SLOW_HALF_LIFE_S_FIELD_NUMBER: _ClassVar[int]
    SETTLE_AFTER_FIELD_NUMBER: _ClassVar[int]
    fast_half_life_s: float
    slow_half_life_s: float
    settle_after: int
    def __init__(self, fast_half_life_s: _Optional[float] = ..., slow_half_life_s: _Optional[float] = ..., settle_after: _Optional[int] = ...) -> None: ...

class ConsolidationSettings(_message.Message):
    __slots__ = ("interval_s", "min_size", "max_size", "min_weight", "min_density")
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MIN_DENSITY_FIELD_NUMBER: _ClassVar[int]
    interval_s: float
    min_size: int
    max_size: int
    min_weight: float
    min_density: float
    def __init__(self, interval_s: _Optional[float] = ..., min_size: _Optional[int] = ..., max_size: _Optional[int] = ..., min_weight: _Optional[float] = ..., min_density: _Optional[float] = ...) -> None: ...

class SpaceRecord(_message.Message):
    __slots__ = ("id", "status", "dim", "metric", "embedder", "created_at", "links", "decay", "consolidation", "max_memories", "max_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    DECAY_FIELD_NUMBER: _ClassVar[int]
    CONSOLIDATION_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORIES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    dim: int
    metric: str
    embedder: str
    created_at: _timestamp_pb2.Timestamp
    links: LinkSettings
    decay: DecaySettings
    consolidation: ConsolidationSettings
    max_memories: int
    max_bytes: int
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., dim: _Optional[int] = ..., metric: _Optional[str] = ..., embedder: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., links: _Optional[_Union[LinkSettings, _Mapping]] = ..., decay: _Optional[_Union[DecaySettings, _Mapping]] = ..., consolidation: _Optional[_Union[ConsolidationSettings, _Mapping]] = ..., max_memories: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class CreateSpace(_message.Message):
    __slots__ = ("id", "dim", "metric", "embedder", "links", "decay", "consolidation", "max_memories", "max_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    DECAY_FIELD_NUMBER: _ClassVar[int]
    CONSOLIDATION_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORIES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    dim: int
    metric: str
    embedder: str
    links: LinkSettings
    decay: DecaySettings
    consolidation: ConsolidationSettings
    max_memories: int
    max_bytes: int
    def __init__(self, id: _Optional[str] = ..., dim: _Optional[int] = ..., metric: _Optional[str] = ..., embedder: _Optional[str] = ..., links: _Optional[_Union[LinkSettings, _Mapping]] = ..., decay: _Optional[_Union[DecaySettings, _Mapping]] = ..., consolidation: _Optional[_Union[ConsolidationSettings, _Mapping]] = ..., max_memories: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...
