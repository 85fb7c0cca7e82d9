"""Typed errors of the SDK: the same exception for the same failure on every transport.

HTTP problem+json answers and NATS query error replies (:class:`QueryError`)
carry ``status``, ``title`` and ``detail``; :func:`error_for` turns either into
one of the classes below.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class EngramError(Exception):
    """Base of every SDK error. ``status`` is the HTTP status the gateway would
    answer (also for NATS), ``title``/``detail``/``hint`` its problem fields and
    ``errors`` the fields named (``[{"field", "message"}]``)."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        hint: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.title = title or type(self).__name__
        self.hint = hint
        self.errors = errors or []
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}" if self.title else self.detail


class NotFound(EngramError):
    """Something asked for does not exist (base of the two below)."""


class SpaceNotFound(NotFound):
    """The memory space does not exist (or is being deleted)."""


class MemoryNotFound(NotFound):
    """The memory id is not in this space (even if another space has it)."""


class InvalidInput(EngramError):
    """The input was refused: invalid ids, fields, dims, bounds. ``errors`` names
    each field. Raised before anything is sent when the SDK's own validation (the
    same pydantic models the gateway and the worker use) catches it."""


class Conflict(EngramError):
    """The space exists with other settings, the space limit is reached, or the
    space is being deleted."""


class Unavailable(EngramError):
    """The service cannot answer now: gateway or NATS unreachable, no worker
    serving the space, a worker timeout, or a write JetStream did not acknowledge.
    Retrying later may succeed (``retry_after`` seconds, when the server said)."""


def _loc(loc: tuple[int | str, ...], prefix: str) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def invalid_input(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """An :class:`InvalidInput` naming each offending field as the gateway does
    (``memories[2].confidence: …``)."""
    errors = [{"field": _loc(tuple(e["loc"]), prefix), "message": e["msg"]} for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    return InvalidInput(detail, status=400, title="Invalid input", errors=errors)


def field_error(field: str, message: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: {message}",
        status=400,
        title="Invalid input",
        errors=[{"field": field, "message": message}],
    )


def error_for(
    status: int,
    title: str,
    detail: str,
    *,
    hint: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    retry_after: float | None = None,
) -> EngramError:
    """The SDK error for a problem (HTTP) or a query error reply (NATS)."""
    cls: type[EngramError] = EngramError
    if status == 404:
        if title == "Space not found":
            cls = SpaceNotFound
        elif title == "Memory not found":
            cls = MemoryNotFound
        else:
            cls = NotFound
    elif status in (400, 413, 422):
        cls = InvalidInput
    elif status == 409:
        cls = Conflict
    elif status in (502, 503, 504):
        cls = Unavailable
    return cls(
        detail, status=status, title=title, hint=hint, errors=errors, retry_after=retry_after
    )


__all__ = [
    "Conflict",
    "EngramError",
    "InvalidInput",
    "MemoryNotFound",
    "NotFound",
    "SpaceNotFound",
    "Unavailable",
    "error_for",
    "field_error",
    "invalid_input",
]
