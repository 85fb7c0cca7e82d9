"""Names on the broker. Everything about space ``S`` lives under ``spaces.S.>``.

The WAL stream captures ``spaces.S.*`` (exactly three tokens: the commands);
queries (``spaces.S.q.<name>``) and events (``spaces.S.evt.<kind>``) have four
tokens and are never captured by it.
"""

from __future__ import annotations

from typing import Final, Literal

REGISTRY_BUCKET: Final = "ENGRAM_SPACES"
SNAPSHOT_BUCKET: Final = "ENGRAM_SNAPSHOTS"
#: Live workers: one key per worker id, its heartbeat (:class:`WorkerBeat`).
WORKERS_BUCKET: Final = "ENGRAM_WORKERS"
KEYS_BUCKET: Final = "ENGRAM_KEYS"
STREAM_PREFIX: Final = "ENGRAM_SPACE_"

CommandVerb = Literal["remember", "forget", "link", "reinforce", "consolidate"]
QueryName = Literal["recall", "get", "list", "stats", "consolidate", "export"]
EventKind = Literal["stored", "forgotten", "linked", "activated", "rejected", "consolidated"]

#: Queue group shared by the workers that answer queries.
QUERY_QUEUE: Final = "engram-workers"
# operator control (not under spaces.>: an agent's permissions never reach it)
RELOAD_SUBJECT: Final = "engram.ctl.reload"
#: Every worker answers with what it hosts and what it failed to load.
STATUS_SUBJECT: Final = "engram.ctl.status"
SERVING_PREFIX: Final = "engram.ctl.serving"


def stream_name(space: str) -> str:
    """The JetStream stream that is space ``space``'s write-ahead log."""
    return f"{STREAM_PREFIX}{space}"


def wal_subjects(space: str) -> str:
    """The subject filter of a space's WAL stream (commands only)."""
    return f"spaces.{space}.*"


def command_subject(space: str, verb: CommandVerb) -> str:
    return f"spaces.{space}.{verb}"


def query_subject(space: str, name: QueryName) -> str:
    return f"spaces.{space}.q.{name}"


def command_wildcard(space: str) -> str:
    """Every command of ``space`` (what its WAL captures)."""
    return f"spaces.{space}.*"


def query_wildcard(space: str) -> str:
    """Every query of ``space``: what its hosts subscribe to (queue :data:`QUERY_QUEUE`)."""
    return f"spaces.{space}.q.*"


def serving_subject(worker_id: str) -> str:
    """Asks worker ``worker_id`` which of the listed spaces it serves (a JSON list
    of space ids in, the served ones out): how a releasing worker knows the new
    host answers before it lets go."""
    return f"{SERVING_PREFIX}.{worker_id}"


def event_subject(space: str, kind: EventKind) -> str:
    return f"spaces.{space}.evt.{kind}"


def command_verb(subject: str) -> str:
    """The verb of a WAL message's subject (``spaces.S.verb``); for messages a
    space's WAL consumer delivers, whose subjects the stream already checked."""
    return subject.rpartition(".")[2]


def split_subject(subject: str) -> tuple[str, str]:
    """``spaces.S.verb`` → ``(S, verb)``; raises ``ValueError`` on other shapes."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != "spaces":
        raise ValueError(f"not a command subject: {subject!r}")
    return parts[1], parts[2]
