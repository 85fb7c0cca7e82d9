"""Subject and stream names: everything about a space lives under ``spaces.S.>``."""

from __future__ import annotations

from typing import get_args

import pytest

from engram_contract.subjects import (
    CommandVerb,
    EventKind,
    QueryName,
    command_subject,
    event_subject,
    query_subject,
    split_subject,
    stream_name,
    wal_subjects,
)


def test_stream_and_wal_names_embed_the_space_id_verbatim() -> None:
    assert stream_name("agent-7_x") == "ENGRAM_SPACE_agent-7_x"
    assert wal_subjects("agent-7_x") == "spaces.agent-7_x.*"


@pytest.mark.parametrize("verb", get_args(CommandVerb))
def test_command_subjects_round_trip_through_split(verb: str) -> None:
    subject = command_subject("alpha", verb)  # type: ignore[arg-type]
    assert subject == f"spaces.alpha.{verb}"
    assert split_subject(subject) == ("alpha", verb)


@pytest.mark.parametrize(
    "subject",
    [query_subject("alpha", name) for name in get_args(QueryName)]
    + [event_subject("alpha", kind) for kind in get_args(EventKind)],
)
def test_queries_and_events_are_not_command_subjects(subject: str) -> None:
    # Four tokens: the WAL filter ``spaces.S.*`` never captures them.
    assert subject.startswith("spaces.alpha.")
    assert len(subject.split(".")) == 4
    with pytest.raises(ValueError, match="not a command subject"):
        split_subject(subject)


@pytest.mark.parametrize("subject", ["", "spaces", "spaces.alpha", "other.alpha.remember"])
def test_split_subject_rejects_other_shapes(subject: str) -> None:
    with pytest.raises(ValueError, match="not a command subject"):
        split_subject(subject)
