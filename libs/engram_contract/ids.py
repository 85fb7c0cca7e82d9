"""Identifiers: memory space ids (validated) and memory / command ids (generated)."""

from __future__ import annotations

import hashlib
import os
import re
import time

SPACE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{2,63}$"
SPACE_ID_RE = re.compile(SPACE_ID_PATTERN)
SPACE_ID_EXPECTED = (
    "expected 3-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit"
)

MEMORY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
MEMORY_ID_RE = re.compile(MEMORY_ID_PATTERN)
MEMORY_ID_EXPECTED = "expected 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '@' or '-'"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class InvalidSpaceId(ValueError):
    """A space id that is not a valid subject token / stream-name part."""


def space_id_problem(space_id: str) -> str | None:
    """Return why ``space_id`` is invalid, or ``None`` when it is valid."""
    if SPACE_ID_RE.fullmatch(space_id):  # fullmatch: '$' would accept a trailing newline
        return None
    return f"space id {space_id!r} is invalid: {SPACE_ID_EXPECTED}"


def validate_space_id(space_id: str) -> str:
    """Return ``space_id`` unchanged if valid; raise :class:`InvalidSpaceId` otherwise."""
    problem = space_id_problem(space_id)
    if problem is not None:
        raise InvalidSpaceId(problem)
    return space_id


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id() -> str:
    """A new unique, time-ordered id (ULID layout: 48-bit ms time + 80 random bits)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return _base32(ms, 10) + _base32(rand, 16)


def derived_id(*parts: str) -> str:
    """A deterministic id from ``parts``: retries with the same idempotency key get the
    same memory ids, so a retried batch upserts instead of duplicating."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()
    return _base32(int.from_bytes(digest, "big"), 26)
