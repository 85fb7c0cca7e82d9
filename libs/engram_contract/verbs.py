"""The table of verbs: every command, query and event of a space, declared once
with its payload model. Decoding, the fold, hosting, replay, the worker's query
dispatch and the AsyncAPI document are all driven from these tables; a new verb
is one entry here plus its handler (a test checks that every name in
:mod:`engram_contract.subjects` has its entry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from engram_contract.messages import (
    ConsolidateCommand,
    ConsolidateRequest,
    ConsolidateResponse,
    ExportRequest,
    ExportResponse,
    ForgetCommand,
    GetRequest,
    GetResponse,
    LinkCommand,
    ListRequest,
    ListResponse,
    MemoriesActivated,
    MemoriesConsolidated,
    MemoriesLinked,
    MemoryForgotten,
    MemoryStored,
    MessageRejected,
    Model,
    RecallRequest,
    RecallResponse,
    ReinforceCommand,
    RememberCommand,
    StatsRequest,
    StatsResponse,
)
from engram_contract.subjects import CommandVerb, EventKind, QueryName


@dataclass(frozen=True)
class CommandSpec:
    """``spaces.<id>.<verb>``: a command published into the space's WAL."""

    model: type[Model]
    event: EventKind  # what the fold announces when it applies one
    doc: str


@dataclass(frozen=True)
class QuerySpec:
    """``spaces.<id>.q.<name>``: a request and its reply (core request/reply)."""

    request: type[Model]
    response: type[Model]
    doc: str


@dataclass(frozen=True)
class EventSpec:
    """``spaces.<id>.evt.<kind>``: what a worker publishes."""

    model: type[Model]
    doc: str


COMMANDS: Final[dict[CommandVerb, CommandSpec]] = {
    "remember": CommandSpec(
        RememberCommand,
        "stored",
        "Store one memory (an existing id is replaced). Set `Nats-Msg-Id` to "
        "`command_id` so JetStream drops retries. The PubAck is the durable receipt.",
    ),
    "forget": CommandSpec(
        ForgetCommand,
        "forgotten",
        "Forget a memory: the worker erases the message that stored it.",
    ),
    "link": CommandSpec(
        LinkCommand,
        "linked",
        "Set the weight of the explicit link between two memories (0 removes it).",
    ),
    "reinforce": CommandSpec(
        ReinforceCommand,
        "activated",
        "Count one more recall for these memories (written by workers).",
    ),
    "consolidate": CommandSpec(
        ConsolidateCommand,
        "consolidated",
        "Make a semantic memory out of members (written by workers).",
    ),
}

QUERIES: Final[dict[QueryName, QuerySpec]] = {
    "recall": QuerySpec(
        RecallRequest,
        RecallResponse,
        "Find memories by cue (text or vector), similarity plus spreading activation.",
    ),
    "get": QuerySpec(GetRequest, GetResponse, "One memory by id."),
    "list": QuerySpec(
        ListRequest, ListResponse, "A page of memories in stream order (`cursor` continues)."
    ),
    "stats": QuerySpec(StatsRequest, StatsResponse, "Counts and positions of the space."),
    "consolidate": QuerySpec(
        ConsolidateRequest,
        ConsolidateResponse,
        "Find groups of densely linked memories and consolidate them.",
    ),
    "export": QuerySpec(
        ExportRequest,
        ExportResponse,
        "A page of the space's memories with embeddings and links, for import.",
    ),
}

EVENTS: Final[dict[EventKind, EventSpec]] = {
    "stored": EventSpec(MemoryStored, "A `remember` was folded."),
    "forgotten": EventSpec(MemoryForgotten, "A `forget` was folded."),
    "linked": EventSpec(MemoriesLinked, "A `link` was folded."),
    "activated": EventSpec(MemoriesActivated, "A `reinforce` was folded."),
    "rejected": EventSpec(
        MessageRejected, "A WAL message could not be folded (skipped; the reason says why)."
    ),
    "consolidated": EventSpec(MemoriesConsolidated, "A `consolidate` was folded."),
}
