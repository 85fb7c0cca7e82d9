"""Space ids (validated) and generated memory / command ids."""

from __future__ import annotations

import time

import pytest

from engram_contract.ids import (
    InvalidSpaceId,
    derived_id,
    new_id,
    space_id_problem,
    validate_space_id,
)

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


@pytest.mark.parametrize(
    "space_id",
    ["abc", "default", "a" * 64, "0ab", "9-_", "agent-42_prod", "a--", "a__"],
)
def test_valid_space_ids_are_accepted_unchanged(space_id: str) -> None:
    assert space_id_problem(space_id) is None
    assert validate_space_id(space_id) == space_id


@pytest.mark.parametrize(
    "space_id",
    [
        pytest.param("", id="empty"),
        pytest.param("ab", id="too-short"),
        pytest.param("a" * 65, id="too-long"),
        pytest.param("-abc", id="dash-first"),
        pytest.param("_abc", id="underscore-first"),
        pytest.param("Abc", id="uppercase"),
        pytest.param("abC", id="uppercase-later"),
        pytest.param("a.b", id="dot"),
        pytest.param("a.bc", id="dot-subject-token"),
        pytest.param("ab*", id="wildcard"),
        pytest.param("ab>", id="full-wildcard"),
        pytest.param("a b", id="space"),
        pytest.param("abç", id="non-ascii"),
        pytest.param("ab/c", id="slash"),
    ],
)
def test_invalid_space_ids_are_refused_with_what_is_expected(space_id: str) -> None:
    problem = space_id_problem(space_id)
    assert problem is not None
    with pytest.raises(InvalidSpaceId) as info:
        validate_space_id(space_id)
    message = str(info.value)
    assert message == problem
    assert repr(space_id) in message
    assert "3-64 characters" in message
    assert "a-z, 0-9, '_' or '-'" in message
    assert "starting with a letter or digit" in message


def test_invalid_space_id_is_a_value_error() -> None:
    # Callers that only know ValueError (pydantic validators, CLI argument parsing)
    # must still catch it.
    with pytest.raises(ValueError, match="invalid"):
        validate_space_id("no")


@pytest.mark.parametrize("space_id", ["abc\n", "default\n"])
def test_space_id_with_trailing_newline_is_refused(space_id: str) -> None:
    assert space_id_problem(space_id) is not None
    with pytest.raises(InvalidSpaceId):
        validate_space_id(space_id)


# -- new_id ---------------------------------------------------------------------


def test_new_id_is_a_26_char_crockford_ulid() -> None:
    value = new_id()
    assert len(value) == 26
    assert set(value) <= CROCKFORD


def test_new_ids_are_unique() -> None:
    values = [new_id() for _ in range(20_000)]
    assert len(set(values)) == len(values)


def test_new_id_sorts_by_creation_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    # Includes base-32 digit roll-overs (31 → 32, 1023 → 1024) and a realistic epoch.
    now_ms = 1_735_689_600_000
    millis = [0, 1, 31, 32, 1023, 1024, now_ms, now_ms + 1, now_ms + 86_400_000]
    clock = iter(millis)
    monkeypatch.setattr(time, "time_ns", lambda: next(clock) * 1_000_000)
    values = [new_id() for _ in millis]
    assert sorted(values) == values
    assert len(set(values)) == len(values)


def test_new_id_orders_with_the_real_clock() -> None:
    earlier = new_id()
    time.sleep(0.003)
    later = new_id()
    assert earlier < later
    # The first 10 characters are the timestamp: the later id's is not smaller.
    assert earlier[:10] <= later[:10]


def test_new_ids_in_the_same_millisecond_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_735_689_600_000 * 1_000_000)
    values = {new_id() for _ in range(1000)}
    assert len(values) == 1000
    assert len({v[:10] for v in values}) == 1  # same time prefix, random tail


# -- derived_id -----------------------------------------------------------------


def test_derived_id_is_deterministic() -> None:
    assert derived_id("alpha", "idem-key-1", "0") == derived_id("alpha", "idem-key-1", "0")


def test_derived_id_is_ulid_shaped() -> None:
    value = derived_id("alpha", "key", "3")
    assert len(value) == 26
    assert set(value) <= CROCKFORD


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("alpha", "key", "0"), ("alpha", "key", "1")),  # batch position
        (("alpha", "key", "0"), ("beta1", "key", "0")),  # space
        (("alpha", "key-a", "0"), ("alpha", "key-b", "0")),  # idempotency key
        (("ab", "c"), ("a", "bc")),  # part boundary matters
        (("a", "b"), ("b", "a")),  # order matters
        (("a",), ("a", "")),  # number of parts matters
        (("alpha", "k", "1", "0"), ("alpha", "k", "10")),
    ],
)
def test_derived_id_differs_for_different_parts(
    left: tuple[str, ...], right: tuple[str, ...]
) -> None:
    assert derived_id(*left) != derived_id(*right)


def test_derived_ids_of_a_batch_are_all_distinct() -> None:
    values = {derived_id("alpha", "retry-key", str(i)) for i in range(1000)}
    assert len(values) == 1000
