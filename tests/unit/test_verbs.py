"""One table of verbs: every command verb has a decoder and a fold handler, every
query a worker handler, every event kind an event class. (The core's purity is
checked with the layers, in test_layers.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from engram_contract.subjects import CommandVerb, EventKind, QueryName
from engram_contract.verbs import COMMANDS, EVENTS, QUERIES
from engram_worker.core import state as core_state
from engram_worker.core.events import EVENT_CLASSES
from engram_worker.core.wal import DECODERS, Forget, Remember
from engram_worker.queries import QUERY_HANDLERS

CORE = Path(core_state.__file__).parent


def test_every_command_verb_has_a_decoder_and_a_fold_handler() -> None:
    verbs = set(get_args(CommandVerb))
    assert set(COMMANDS) == verbs
    assert set(DECODERS) == verbs
    assert set(core_state.FOLD) == verbs


def test_every_decoded_command_names_its_verb() -> None:
    assert Remember.verb == "remember" and Forget.verb == "forget"


def test_every_query_has_a_worker_handler() -> None:
    names = set(get_args(QueryName))
    assert set(QUERIES) == names
    assert set(QUERY_HANDLERS) == names


def test_every_event_kind_has_an_event_class() -> None:
    kinds = set(get_args(EventKind))
    assert set(EVENTS) == kinds
    assert set(EVENT_CLASSES) == kinds
    assert all(cls.kind == kind for kind, cls in EVENT_CLASSES.items())


def test_every_command_announces_an_event_with_a_class() -> None:
    assert {spec.event for spec in COMMANDS.values()} <= set(EVENT_CLASSES)


def test_a_memorys_fields_are_listed_once() -> None:
    """The wire's memory fields come from the fold's record by name (export,
    to_memory), and a snapshot's columns are the record's fields."""
    from engram_contract.messages import ExportedMemory, Memory
    from engram_worker.core.persistence import COLUMNS
    from engram_worker.core.records import StoredMemory

    fields = set(StoredMemory.__struct_fields__)
    assert set(Memory.model_fields) - {"embedding"} <= fields
    wire_only = {"embedding", "embedding_b64", "members", "links"}
    assert set(ExportedMemory.model_fields) - wire_only <= fields
    assert tuple(COLUMNS) == StoredMemory.__struct_fields__
