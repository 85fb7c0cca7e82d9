"""API keys: their format, how they are stored (a hash, never the secret) and what
each role may do. Pure: the key store on NATS is :mod:`engram_nats.keys`.

A key reads ``egk_<id>_<secret>``: the id (12 hex characters) finds its record,
the secret (43 URL-safe characters, 256 bits) proves it. Only the SHA-256 of
the whole key is stored; a fast hash is enough for a random 256-bit secret (no
dictionary to walk), and the comparison is constant-time. A key set by an
operator (``ENGRAM_ADMIN_KEY``) may be any string of 16 or more characters; it
is stored under the id :data:`ENV_ADMIN_ID`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from engram_contract.messages.base import Model, SpaceId

Role = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = ("read", "write", "admin")
_RANK: dict[str, int] = {"read": 1, "write": 2, "admin": 3}

PREFIX = "egk"
ENV_ADMIN_ID = "env-admin"
MIN_OPERATOR_KEY_CHARS = 16
MAX_KEY_CHARS = 512
_FORMAT = re.compile(r"^egk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
MAX_KEY_SPACES = 256


class KeyRecord(Model):
    """What the key store holds about a key (``ENGRAM_KEYS``, under its id)."""

    id: str = Field(description="The key's public id (the part after `egk_`).")
    hash: str = Field(description="SHA-256 (hex) of the whole key.")
    role: Role
    spaces: list[SpaceId] = Field(
        default_factory=list, description="The spaces it may touch; empty for admin keys."
    )
    label: str = Field(default="", max_length=200, description="A note from its creator.")
    created_at: datetime
    last_used_at: datetime | None = None


class KeyInfo(Model):
    """A key as listed: everything but the hash."""

    id: str
    role: Role
    spaces: list[str]
    label: str = ""
    created_at: datetime
    last_used_at: datetime | None = None

    @classmethod
    def of(cls, record: KeyRecord) -> KeyInfo:
        return cls(**record.model_dump(exclude={"hash"}))


class NewKey(Model):
    """The answer to creating a key: the only time its secret is shown."""

    id: str
    key: str = Field(description="The key itself. Shown once: store it now.")
    role: Role
    spaces: list[str]
    label: str = ""
    created_at: datetime


class KeyRequest(Model):
    """``POST /api/v1/keys``: a key for some spaces (``role`` read or write), or an
    admin key (``admin: true``)."""

    spaces: list[SpaceId] = Field(default_factory=list, max_length=MAX_KEY_SPACES)
    role: Role | None = None
    admin: bool = False
    label: str = Field(default="", max_length=200)

    def resolved_role(self) -> Role:
        """The role asked for; :class:`ValueError` when the request is contradictory."""
        if self.admin:
            if self.role not in (None, "admin") or self.spaces:
                raise ValueError("an admin key has no spaces and no other role")
            return "admin"
        if self.role is None or self.role == "admin":
            raise ValueError('role must be "read" or "write" (or send "admin": true)')
        if not self.spaces:
            raise ValueError("a read or write key needs at least one space")
        return self.role


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id(key: str) -> str | None:
    """The record id a presented key is looked up under, or None when it cannot be
    a key at all (wrong length)."""
    match = _FORMAT.match(key)
    if match is not None:
        return match.group(1)
    if MIN_OPERATOR_KEY_CHARS <= len(key) <= MAX_KEY_CHARS:
        return ENV_ADMIN_ID
    return None


def new_key() -> tuple[str, str]:
    """A fresh ``(id, key)``."""
    kid = secrets.token_hex(6)
    return kid, f"{PREFIX}_{kid}_{secrets.token_urlsafe(32)}"


def new_record(
    role: Role, spaces: list[str], label: str = "", now: datetime | None = None
) -> tuple[KeyRecord, str]:
    kid, key = new_key()
    record = KeyRecord(
        id=kid,
        hash=key_hash(key),
        role=role,
        spaces=sorted(set(spaces)) if role != "admin" else [],
        label=label,
        created_at=now or datetime.now(UTC),
    )
    return record, key


def operator_record(key: str, now: datetime | None = None) -> KeyRecord:
    """The record of an operator-set admin key (``ENGRAM_ADMIN_KEY``)."""
    if not MIN_OPERATOR_KEY_CHARS <= len(key) <= MAX_KEY_CHARS:
        raise ValueError(
            f"ENGRAM_ADMIN_KEY must be {MIN_OPERATOR_KEY_CHARS}-{MAX_KEY_CHARS} characters "
            "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    kid = key_id(key)
    return KeyRecord(
        id=kid or ENV_ADMIN_ID,
        hash=key_hash(key),
        role="admin",
        label="ENGRAM_ADMIN_KEY",
        created_at=now or datetime.now(UTC),
    )


def matches(record: KeyRecord, key: str) -> bool:
    """Whether ``key`` is the key of ``record`` (constant-time in the hashes)."""
    return hmac.compare_digest(record.hash.encode(), key_hash(key).encode())


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a key's id, role and spaces."""

    key_id: str
    role: Role
    spaces: frozenset[str]

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def has(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def may(self, role: Role, space: str | None) -> bool:
        """May act with ``role`` on ``space`` (None: on no particular space, which
        only an admin may for anything but reading its own list)."""
        if not self.has(role):
            return False
        if self.admin:
            return True
        return space is not None and space in self.spaces

    @classmethod
    def of(cls, record: KeyRecord) -> Principal:
        return cls(record.id, record.role, frozenset(record.spaces))


#: who acts when keys are not required (auth off, or auto on loopback without a key)
NOBODY_CHECKED = Principal("-", "admin", frozenset())
