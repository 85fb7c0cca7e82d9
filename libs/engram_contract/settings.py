"""Settings from the environment (``ENGRAM_`` prefix), read once in ``main()``."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: a KV key and a subject token sequence: letters, digits, '.', '_', '-'
WORKER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class CommonSettings(BaseSettings):
    """What every Engram process needs."""

    model_config = SettingsConfigDict(env_prefix="ENGRAM_", extra="ignore")

    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL(s).")
    data_dir: Path = Field(default=Path(".engram"), description="Local data (dev stack).")
    nats_auth_dir: Path | None = Field(
        default=None,
        description="The NATS auth secrets `engram nats-auth init` wrote (a NATS whose "
        "agents are checked by the auth callout): Engram processes connect as its service "
        "user, the callout signs with its issuer key. Unset: ENGRAM_NATS_USER/PASSWORD.",
    )
    default_dim: int = Field(default=384, ge=2, le=4096, description="dim of new spaces.")
    default_embedder: str = Field(
        default="e5-small",
        description="Embedder of new spaces: e5-small (a bundled local model), openai "
        "(ENGRAM_EMBED_URL) or hash-ngram-v1 (shared words, no model).",
    )
    stream_replicas: int = Field(default=1, ge=1, le=5, description="Replicas of new streams.")
    log_level: str = Field(default="INFO")
    space_replicas: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Workers that host each space (rendezvous placement over the live "
        "workers); 2 keeps a space answering while one of its workers is lost.",
    )
    worker_ttl: float = Field(
        default=5.0,
        gt=0,
        description="Seconds after its last heartbeat that a silent worker counts as gone "
        "and its spaces are placed elsewhere (workers beat every third of it).",
    )
    events_max_age: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds the ENGRAM_EVENTS stream keeps events: how far back an SSE "
        "client reconnecting with Last-Event-ID can catch up.",
    )
    events_max_consumers: int = Field(
        default=10_000,
        ge=1,
        description="Most SSE clients at once over the whole deployment (one JetStream "
        "consumer each on ENGRAM_EVENTS).",
    )
    max_metric_spaces: int = Field(
        default=100,
        ge=1,
        description="Most distinct memory_space label values in metrics; further spaces "
        "are labelled __other__.",
    )


class EmbedSettings(BaseSettings):
    """The ``openai`` embedder's endpoint: any OpenAI-compatible ``POST /v1/embeddings``
    (OpenAI, Ollama, vLLM, text-embeddings-inference, LM Studio). Read by every
    process that embeds text for a space that names it (gateway, SDK over NATS,
    worker), when it first does."""

    model_config = SettingsConfigDict(env_prefix="ENGRAM_EMBED_", extra="ignore")

    url: str | None = Field(
        default=None,
        description="Base URL of the endpoint (…/v1/embeddings is appended; a URL ending "
        "in /v1 gets /embeddings). Unset: spaces cannot use the openai embedder.",
    )
    model: str = Field(default="text-embedding-3-small", description="The model asked for.")
    api_key: SecretStr | None = Field(
        default=None, description="Sent as a Bearer token; never logged nor in errors."
    )
    dim: int | None = Field(
        default=None,
        ge=2,
        le=4096,
        description="What the model returns: spaces of another dim are refused at creation. "
        "Unset: the space's dim, checked against each answer.",
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per request.")
    retries: int = Field(
        default=4,
        ge=0,
        le=20,
        description="Further attempts after a 429, a 5xx, a timeout or a refused connection "
        "(exponential backoff from 0.5 s, or the endpoint's Retry-After).",
    )
    max_batch: int = Field(default=256, ge=1, le=8192, description="Most texts per request.")
    document_prefix: str = Field(
        default="",
        max_length=100,
        description="Put before each stored text (e5 models: 'passage: ', nomic: "
        "'search_document: '), for models trained with prefixes.",
    )
    query_prefix: str = Field(
        default="",
        max_length=100,
        description="Put before each recall cue (e5: 'query: ', nomic: 'search_query: ').",
    )


class GatewaySettings(CommonSettings):
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API binds to.")
    http_port: int = Field(default=7432, description="Port of the HTTP API.")
    grpc_port: int = Field(
        default=7433,
        ge=0,
        le=65535,
        description="Port of the gRPC API (engram.v1.MemoryService, health, reflection), "
        "bound to http_host; 0 turns it off.",
    )
    http_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Gateway processes serving the HTTP API on one port (uvicorn workers); "
        "more than 1 shares read-your-writes positions and metrics between them "
        "(docs/operations.md, 'Sizing the gateway').",
    )
    default_space: str = Field(default="default", description="Created at gateway start.")
    auto_create_spaces: bool = Field(
        default=True, description="First write to an unknown valid space creates it."
    )
    require_explicit_space: bool = Field(
        default=True,
        description="Legacy routes without a space (no X-Memory-Space, no ?space=) answer 400; "
        "false: they use default_space, with a Deprecation header.",
    )
    max_spaces: int = Field(default=10_000, ge=1, description="Most spaces the registry holds.")
    space_max_memories: int = Field(
        default=0,
        ge=0,
        description="max_memories of new spaces: most live memories in one (0: no limit).",
    )
    space_max_bytes: int = Field(
        default=0,
        ge=0,
        description="max_bytes of new spaces: most bytes of one's WAL stream (0: no limit).",
    )
    query_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for a worker.")
    publish_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for PubAcks.")
    nats_unavailable_after: float = Field(
        default=2.0,
        gt=0,
        description="Seconds without a NATS connection after which every request (and "
        "every one waiting) answers 503 NATS unavailable; a reconnection within them "
        "(a cluster node failing over) is waited for.",
    )
    max_body_bytes: int = Field(default=128 * 1024 * 1024, description="Largest request body.")
    auth: Literal["auto", "required", "off"] = Field(
        default="auto",
        description="API keys: required, off, or auto (required unless the gateway listens "
        "on loopback only; a key sent anyway is checked).",
    )
    rate_limit: float = Field(
        default=0.0,
        ge=0,
        description="Requests per second each API key may make to one gateway process "
        "(a token bucket; 0: no limit). Over it: 429 with Retry-After.",
    )
    rate_burst: int = Field(
        default=0,
        ge=0,
        description="Requests a key may make at once before the rate applies "
        "(0: twice the rate, at least 1).",
    )
    admin_key: str | None = Field(
        default=None,
        min_length=16,
        max_length=512,
        description="An admin API key set at start (stored hashed; a new value replaces the "
        "old one): how a deployment gets its first key.",
    )


class WorkerSettings(CommonSettings):
    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        pattern=WORKER_ID_PATTERN,
        description="This worker's name among the live workers (unique: a second process "
        "with the same id refuses to start).",
    )
    space_idle_unload: float = Field(
        default=0.0,
        ge=0,
        description="Seconds without a query or a write after which a space is snapshotted "
        "and unloaded (cold); its next query or write loads it again. With it on, spaces "
        "placed on a worker are loaded on first use. 0: spaces stay loaded.",
    )
    handover_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Most seconds a worker keeps serving a space placed elsewhere while "
        "its new host loads it (make before break).",
    )
    index_dtype: Literal["f32", "f16"] = Field(
        default="f32", description="usearch scalar type; f16 halves memory, inserts faster."
    )
    index_batch: int = Field(default=1024, ge=1, description="Vectors per index insert batch.")
    apply_wait_timeout: float = Field(
        default=5.0, gt=0, description="Most seconds a query waits for its min_seq."
    )
    query_concurrency: int = Field(default=64, ge=1, description="Queries handled at once.")
    event_window: float = Field(
        default=60.0,
        ge=0,
        description="Messages folded within this many seconds of being written are announced "
        "as events; older history (a replay) is folded quietly.",
    )
    snapshot_every: int = Field(
        default=50_000, ge=1, description="Write a space's snapshot after this many commands."
    )
    snapshot_interval: float = Field(
        default=60.0,
        gt=0,
        description="Write a snapshot when anything changed and the last is this many seconds old.",
    )
    snapshot_forget_delay: float = Field(
        default=10.0,
        ge=0,
        description="A memory forgotten (or replaced) while in the newest snapshot leaves it "
        "within this many seconds: a new snapshot is written and the old one erased.",
    )
    reinforce_delay: float = Field(
        default=0.25,
        ge=0,
        description="Recalls within this many seconds are reinforced by one WAL command.",
    )
    wal_heartbeat: float = Field(
        default=2.0,
        gt=0,
        description="Idle heartbeat of each space's WAL consumer, in seconds. Two missed "
        "heartbeats (after a nats-server restart, say) make the worker re-create the "
        "consumer from its position; lower notices sooner, at one message per space per beat.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the worker's /metrics, /health, /ready bind to."
    )
    stuck_after: float = Field(
        default=60.0,
        gt=0,
        description="A space behind its WAL whose fold has not moved for this many seconds "
        "is stuck: the worker's /ready answers 503 and names it.",
    )
    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port of the worker's /metrics, /health and /ready (0: not served).",
    )
