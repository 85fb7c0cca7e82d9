import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from engram_proto.v1 import memory_pb2 as _memory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecallRequest(_message.Message):
    __slots__ = ("query", "embedding", "k", "mode", "seed_k", "max_hops", "hop_decay", "threshold", "max_fanout", "hybrid_weight", "tags", "since", "until", "trace", "reinforce", "consistency", "min_seq", "memory_space_id", "embedding_b64")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SEED_K_FIELD_NUMBER: _ClassVar[int]
    MAX_HOPS_FIELD_NUMBER: _ClassVar[int]
    HOP_DECAY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_FANOUT_FIELD_NUMBER: _ClassVar[int]
    HYBRID_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    REINFORCE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_B64_FIELD_NUMBER: _ClassVar[int]
    query: str
    embedding: _containers.RepeatedScalarFieldContainer[float]
    k: int
    mode: str
    seed_k: int
    max_hops: int
    hop_decay: float
    threshold: float
    max_fanout: int
    hybrid_weight: float
    tags: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    trace: bool
    reinforce: bool
    consistency: str
    min_seq: int
    memory_space_id: str
    embedding_b64: bytes
    def __init__(self, query: _Optional[str] = ..., embedding: _Optional[_Iterable[float]] = ..., k: _Optional[int] = ..., mode: _Optional[str] = ..., seed_k: _Optional[int] = ..., max_hops: _Optional[int] = ..., hop_decay: _Optional[float] = ..., threshold: _Optional[float] = ..., max_fanout: _Optional[int] = ..., hybrid_weight: _Optional[float] = ..., tags: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace: _Optional[bool] = ..., reinforce: _Optional[bool] = ..., consistency: _Optional[str] = ..., min_seq: _Optional[int] = ..., memory_space_id: _Optional[str] = ..., embedding_b64: _Optional[bytes] = ...) -> None: ...

class TraceStep(_message.Message):
    __slots__ = ("memory_id", "activation", "hops", "weight", "kind")
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    memory_id: str
    activation: float
    hops: int
    weight: float
    kind: str
    def __init__(self, memory_id: _Optional[str] = ..., activation: _Optional[float] = ..., hops: _Optional[int] = ..., weight: _Optional[float] = ..., kind: _Optional[str] = ...) -> None: ...

class RecallResult(_message.Message):
    __slots__ = ("memory", "score", "similarity", "activation", "confidence", "retention", "hops", "trace")
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    memory: _memory_pb2.Memory
    score: float
    similarity: float
    activation: float
    confidence: float
    retention: float
    hops: int
    trace: _containers.RepeatedCompositeFieldContainer[TraceStep]
    def __init__(self, memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ..., score: _Optional[float] = ..., similarity: _Optional[float] = ..., activation: _Optional[float] = ..., confidence: _Optional[float] = ..., retention: _Optional[float] = ..., hops: _Optional[int] = ..., trace: _Optional[_Iterable[_Union[TraceStep, _Mapping]]] = ...) -> None: ...

class RecallResponse(_message.Message):
    __slots__ = ("space", "applied_seq", "results")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    space: str
    applied_seq: int
    results: _containers.RepeatedCompositeFieldContainer[RecallResult]
    def __init__(self, space: _Optional[str] = ..., applied_seq: _Optional[int] = ..., results: _Optional[_Iterable[_Union[RecallResult, _Mapping]]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("memory_id", "include_embedding", "min_seq", "memory_space_id")
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    memory_id: str
    include_embedding: bool
    min_seq: int
    memory_space_id: str
    def __init__(self, memory_id: _Optional[str] = ..., include_embedding: _Optional[bool] = ..., min_seq: _Optional[int] = ..., memory_space_id: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("space", "applied_seq", "memory")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    space: str
    applied_seq: int
    memory: _memory_pb2.Memory
    def __init__(self, space: _Optional[str] = ..., applied_seq: _Optional[int] = ..., memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("limit", "cursor", "include_embedding", "min_seq", "memory_space_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    include_embedding: bool
    min_seq: int
    memory_space_id: str
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ..., include_embedding: _Optional[bool] = ..., min_seq: _Optional[int] = ..., memory_space_id: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("space", "applied_seq", "memories", "next_cursor")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    space: str
    applied_seq: int
    memories: _containers.RepeatedCompositeFieldContainer[_memory_pb2.Memory]
    next_cursor: str
    def __init__(self, space: _Optional[str] = ..., applied_seq: _Optional[int] = ..., memories: _Optional[_Iterable[_Union[_memory_pb2.Memory, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("min_seq", "memory_space_id")
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    min_seq: int
    memory_space_id: str
    def __init__(self, min_seq: _Optional[int] = ..., memory_space_id: _Optional[str] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("space", "memories", "applied_seq", "rejected", "snapshot_seq", "snapshot_at", "recovery", "worker")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SEQ_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_AT_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    space: str
    memories: int
    applied_seq: int
    rejected: int
    snapshot_seq: int
    snapshot_at: _timestamp_pb2.Timestamp
    recovery: str
    worker: str
    def __init__(self, space: _Optional[str] = ..., memories: _Optional[int] = ..., applied_seq: _Optional[int] = ..., rejected: _Optional[int] = ..., snapshot_seq: _Optional[int] = ..., snapshot_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recovery: _Optional[str] = ..., worker: _Optional[str] = ...) -> None: ...

class ConsolidateRequest(_message.Message):
    __slots__ = ("dry_run", "min_seq", "memory_space_id")
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    min_seq: int
    memory_space_id: str
    def __init__(self, dry_run: _Optional[bool] = ..., min_seq: _Optional[int] = ..., memory_space_id: _Optional[str] = ...) -> None: ...

class ConsolidatedGroup(_message.Message):
    __slots__ = ("memory_id", "members")
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    memory_id: str
    members: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, memory_id: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ...) -> None: ...

class ConsolidateResponse(_message.Message):
    __slots__ = ("space", "applied_seq", "groups", "seq")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    space: str
    applied_seq: int
    groups: _containers.RepeatedCompositeFieldContainer[ConsolidatedGroup]
    seq: int
    def __init__(self, space: _Optional[str] = ..., applied_seq: _Optional[int] = ..., groups: _Optional[_Iterable[_Union[ConsolidatedGroup, _Mapping]]] = ..., seq: _Optional[int] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("limit", "cursor", "tags", "min_seq", "memory_space_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    min_seq: int
    memory_space_id: str
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., min_seq: _Optional[int] = ..., memory_space_id: _Optional[str] = ...) -> None: ...

class ExportLink(_message.Message):
    __slots__ = ("target", "weight", "kind")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    target: str
    weight: float
    kind: str
    def __init__(self, target: _Optional[str] = ..., weight: _Optional[float] = ..., kind: _Optional[str] = ...) -> None: ...

class ExportedMemory(_message.Message):
    __slots__ = ("id", "content", "embedding_b64", "embedding", "confidence", "tags", "metadata", "occurred_at", "kind", "members", "links", "created_at", "seq", "recalls", "last_recall")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_B64_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECALLS_FIELD_NUMBER: _ClassVar[int]
    LAST_RECALL_FIELD_NUMBER: _ClassVar[int]
    id: str
    content: str
    embedding_b64: bytes
    embedding: _containers.RepeatedScalarFieldContainer[float]
    confidence: float
    tags: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    occurred_at: _timestamp_pb2.Timestamp
    kind: str
    members: _containers.RepeatedScalarFieldContainer[str]
    links: _containers.RepeatedCompositeFieldContainer[ExportLink]
    created_at: _timestamp_pb2.Timestamp
    seq: int
    recalls: int
    last_recall: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., content: _Optional[str] = ..., embedding_b64: _Optional[bytes] = ..., embedding: _Optional[_Iterable[float]] = ..., confidence: _Optional[float] = ..., tags: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ..., links: _Optional[_Iterable[_Union[ExportLink, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seq: _Optional[int] = ..., recalls: _Optional[int] = ..., last_recall: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("space", "applied_seq", "memories", "next_cursor")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    space: str
    applied_seq: int
    memories: _containers.RepeatedCompositeFieldContainer[ExportedMemory]
    next_cursor: str
    def __init__(self, space: _Optional[str] = ..., applied_seq: _Optional[int] = ..., memories: _Optional[_Iterable[_Union[ExportedMemory, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class QueryError(_message.Message):
    __slots__ = ("status", "title", "detail")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    status: int
    title: str
    detail: str
    def __init__(self, status: _Optional[int] = ..., title: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class QueryErrorReply(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: QueryError
    def __init__(self, error: _Optional[_Union[QueryError, _Mapping]] = ...) -> None: ...
