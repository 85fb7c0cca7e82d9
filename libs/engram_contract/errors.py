"""Engram's one error vocabulary: what went wrong, for every surface alike.

The shared NATS layer (:mod:`engram_nats.service`) raises these; each edge
translates them once: the gateway renders them as RFC 9457 problem+json
(``status``, ``title``, ``detail``, ``hint``, ``errors``, ``Retry-After``), the
SDK raises them as they are, the CLI turns them into a message and an exit code.
A worker's query error reply (``{"error": {"status", "title", "detail"}}``) and
an HTTP problem become the same class through :func:`error_for`.

Field locations have one style everywhere: ``memories[2].confidence``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

#: How many field errors a validation message names before "and N more".
MAX_NAMED = 5


class EngramError(Exception):
    """Base of every Engram error. ``status`` is the HTTP status the gateway
    answers with (also over NATS), ``title``/``detail``/``hint`` its problem
    fields, ``errors`` the fields named (``[{"field", "message"}]``),
    ``retry_after`` the seconds after which a retry may succeed and ``slug`` the
    last part of the problem's ``type`` URI."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        hint: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
        slug: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.hint = hint
        self.errors = errors or []
        self.retry_after = retry_after
        self.slug = slug or title.lower().replace(" ", "-")

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}" if self.title else self.detail


class NotFound(EngramError):
    """Something asked for does not exist (base of the two below)."""


class SpaceNotFound(NotFound):
    """The memory space does not exist (or is being deleted)."""


class MemoryNotFound(NotFound):
    """The memory id is not in this space (even if another space has it)."""


class Unauthorized(EngramError):
    """No key, or one that is not (or no longer) valid (401)."""


class Forbidden(EngramError):
    """The key is valid but may not do this, or not in this space (403)."""


class RateLimited(EngramError):
    """Over the API key's request rate (429); ``retry_after`` says when to retry."""


class InvalidInput(EngramError):
    """The input was refused: invalid ids, fields, dims, bounds, sizes.
    ``errors`` names each field."""


class Conflict(EngramError):
    """The space exists with other settings, or is being deleted."""


class LimitReached(Conflict):
    """A limit is reached (``ENGRAM_MAX_SPACES``)."""


class Unavailable(EngramError):
    """The service cannot answer now: gateway or NATS unreachable, no worker
    serving the space, or a write JetStream did not acknowledge. Retrying later
    may succeed (``retry_after`` seconds, when known)."""


class Timeout(Unavailable):
    """Nobody answered in time (a worker, the gateway)."""


def error_for(
    status: int,
    title: str,
    detail: str,
    *,
    hint: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    retry_after: float | None = None,
    slug: str | None = None,
) -> EngramError:
    """The typed error for a status and title: an HTTP problem, a worker's error
    reply, or an error raised at the edge."""
    cls: type[EngramError] = EngramError
    if status == 404:
        cls = {"Space not found": SpaceNotFound, "Memory not found": MemoryNotFound}.get(
            title, NotFound
        )
    elif status in (400, 413, 422):
        cls = InvalidInput
    elif status == 401:
        cls = Unauthorized
    elif status == 403:
        cls = Forbidden
    elif status == 429:
        cls = RateLimited
    elif status == 409:
        cls = LimitReached if title == "Space limit reached" else Conflict
    elif status == 504:
        cls = Timeout
    elif status in (502, 503):
        cls = Unavailable
    return cls(status, title, detail, hint=hint, errors=errors, retry_after=retry_after, slug=slug)


def space_not_found(space: str, hint: str | None = None) -> SpaceNotFound:
    return SpaceNotFound(
        404, "Space not found", f"memory space {space!r} does not exist", hint=hint
    )


# -- validation errors -------------------------------------------------------


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """A pydantic location as a field path: ``("memories", 2, "text")`` is
    ``memories[2].text`` (after ``prefix``, e.g. ``line 3``)."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    """``[{"field", "message"}]``, one per error, in :func:`field_path` style."""
    return [{"field": field_path(e["loc"], prefix), "message": e["msg"]} for e in exc.errors()]


def validation_message(exc: ValidationError, prefix: str = "") -> str:
    """One line naming each offending field (the first few):
    ``memories[2].confidence: Input should be …; and 3 more``."""
    errors = field_errors(exc, prefix)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:MAX_NAMED])
    if len(errors) > MAX_NAMED:
        detail += f"; and {len(errors) - MAX_NAMED} more"
    return detail


def invalid_input(
    exc: ValidationError, prefix: str = "", *, hint: str | None = None
) -> InvalidInput:
    """A 400 naming each offending field, e.g. ``memories[2].confidence``."""
    return InvalidInput(
        400,
        "Invalid input",
        validation_message(exc, prefix),
        hint=hint,
        errors=field_errors(exc, prefix),
    )


def field_error(field: str, message: str, hint: str | None = None) -> InvalidInput:
    """A 400 about one field."""
    return InvalidInput(
        400,
        "Invalid input",
        f"{field}: {message}",
        hint=hint,
        errors=[{"field": field, "message": message}],
    )


__all__ = [
    "Conflict",
    "EngramError",
    "InvalidInput",
    "LimitReached",
    "MemoryNotFound",
    "NotFound",
    "SpaceNotFound",
    "Timeout",
    "Unavailable",
    "error_for",
    "field_error",
    "field_errors",
    "field_path",
    "invalid_input",
    "space_not_found",
    "validation_message",
]
