"""Keys as data: format, hashing, constant-time checking, roles and scopes."""

from __future__ import annotations

import hmac
from typing import Any

import pytest

from engram_contract.keys import (
    ENV_ADMIN_ID,
    KeyRequest,
    Principal,
    key_id,
    matches,
    new_record,
    operator_record,
)


def test_a_new_key_is_found_by_its_id_and_only_its_hash_is_stored() -> None:
    record, key = new_record("write", ["beta", "alpha", "alpha"])
    assert key.startswith(f"egk_{record.id}_") and len(key) == 4 + 12 + 1 + 43
    assert key_id(key) == record.id
    assert record.spaces == ["alpha", "beta"]
    assert (
        key not in record.model_dump_json() and key.split("_", 2)[2] not in record.model_dump_json()
    )
    assert matches(record, key)
    assert not matches(record, key[:-1] + ("A" if key[-1] != "A" else "B"))
    other, _ = new_record("write", ["alpha"])
    assert not matches(other, key)


def test_an_operator_key_is_any_long_string_stored_as_the_env_admin() -> None:
    record = operator_record("correct horse battery staple")
    assert record.id == ENV_ADMIN_ID and record.role == "admin" and record.spaces == []
    assert key_id("correct horse battery staple") == ENV_ADMIN_ID
    assert matches(record, "correct horse battery staple")
    with pytest.raises(ValueError, match="16-512 characters"):
        operator_record("short")
    assert key_id("short") is None


def test_the_check_compares_fixed_length_digests_in_constant_time(monkeypatch: Any) -> None:
    """However much of a wrong key matches the right one (nothing, a long prefix,
    all but the last character), the comparison is hmac.compare_digest over two
    64-character digests: its time does not depend on where they differ."""
    record, key = new_record("read", ["alpha"])
    seen: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        seen.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    for wrong in (
        "egk_" + record.id + "_" + "A" * 43,
        key[:-1] + ("A" if key[-1] != "A" else "B"),
        key[:30] + "x" * (len(key) - 30),
        "x" * 16,
    ):
        assert not matches(record, wrong)
    assert matches(record, key)
    assert seen == [(64, 64)] * 5


def test_roles_and_scopes() -> None:
    reader = Principal("r", "read", frozenset({"alpha"}))
    writer = Principal("w", "write", frozenset({"alpha"}))
    admin = Principal("a", "admin", frozenset())
    assert reader.may("read", "alpha") and not reader.may("write", "alpha")
    assert not reader.may("read", "beta") and not reader.may("read", None)
    assert writer.may("write", "alpha") and writer.may("read", "alpha")
    assert not writer.may("admin", "alpha") and not writer.may("write", "beta")
    assert admin.may("admin", None) and admin.may("write", "anything")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"role": "write"}, "at least one space"),
        ({"spaces": ["abc"]}, 'role must be "read" or "write"'),
        ({"spaces": ["abc"], "role": "admin"}, 'role must be "read" or "write"'),
        ({"admin": True, "spaces": ["abc"]}, "no spaces"),
        ({"admin": True, "role": "read"}, "no spaces and no other role"),
    ],
)
def test_contradictory_key_requests_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeyRequest.model_validate(body).resolved_role()


def test_a_key_request_resolves_its_role() -> None:
    assert KeyRequest(admin=True).resolved_role() == "admin"
    assert KeyRequest(spaces=["abc"], role="read").resolved_role() == "read"
