"""``memory_space_id`` in a WAL command: absent or the subject's space → folded as
usual (the fast path still takes it); another space → rejected, nothing applied."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engram_contract.messages import encode_embedding
from engram_worker.core.wal import CommandRejected, Forget, Remember, decode, fast_decode
from tests.helpers import SPACE, broker_time, empty_state


def body(verb: str, **fields: Any) -> bytes:
    doc: dict[str, Any] = {"schema_version": 1, "command_id": "c1", **fields}
    if verb == "remember":
        doc.setdefault("memory", {"id": "m", "content": "x", "embedding_b64": VECTOR})
    elif verb == "forget":
        doc.setdefault("memory_id", "m")
    return json.dumps(doc).encode()


VECTOR = encode_embedding([1.0] + [0.0] * 15)


@pytest.mark.parametrize("verb", ["remember", "forget"])
def test_fast_path_takes_its_own_space_or_none(verb: str) -> None:
    for fields in ({}, {"memory_space_id": SPACE}, {"memory_space_id": None}):
        command = fast_decode(verb, body(verb, **fields), SPACE)
        assert isinstance(command, Remember if verb == "remember" else Forget)
    # another space, or a space to compare with missing: the referee decides
    assert fast_decode(verb, body(verb, memory_space_id="beta"), SPACE) is None
    assert fast_decode(verb, body(verb, memory_space_id=SPACE), None) is None


@pytest.mark.parametrize(
    ("verb", "fields"),
    [
        ("remember", {}),
        ("forget", {}),
        ("link", {"source": "a", "target": "b", "weight": 0.5}),
        ("reinforce", {"memory_ids": ["a"]}),
        ("consolidate", {"memory_id": "s", "members": ["a", "b"]}),
    ],
)
def test_another_space_is_rejected_by_every_verb(verb: str, fields: dict[str, Any]) -> None:
    decode(verb, body(verb, **fields, memory_space_id=SPACE), SPACE)
    decode(verb, body(verb, **fields, memory_space_id="beta"), None)  # not checked
    with pytest.raises(CommandRejected) as exc:
        decode(verb, body(verb, **fields, memory_space_id="beta"), SPACE)
    assert exc.value.reason.startswith("invalid message: memory_space_id: 'beta'")
    assert exc.value.command_id == "c1"
    with pytest.raises(CommandRejected, match="memory_space_id"):
        decode(verb, body(verb, **fields, memory_space_id="Not A Space"), SPACE)


def test_the_fold_rejects_and_stores_nothing() -> None:
    state = empty_state()
    event = state.apply_message(
        "remember", body("remember", memory_space_id="beta"), 1, broker_time(1)
    )
    assert type(event).__name__ == "Rejected"
    assert len(state) == 0 and state.rejected == 1 and state.applied_seq == 1
    event = state.apply_message(
        "remember", body("remember", memory_space_id=SPACE), 2, broker_time(2)
    )
    assert type(event).__name__ == "Stored"
    assert len(state) == 1
