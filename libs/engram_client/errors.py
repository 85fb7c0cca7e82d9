"""Typed errors of the SDK: the same exception for the same failure on every
transport. They are Engram's one error vocabulary, :mod:`engram_contract.errors`,
re-exported here: HTTP problem+json answers and NATS query error replies carry
``status``, ``title`` and ``detail``, and :func:`error_for` turns either into one
of these classes."""

from engram_contract.errors import (
    Conflict,
    EngramError,
    Forbidden,
    InvalidInput,
    LimitReached,
    MemoryNotFound,
    NotFound,
    RateLimited,
    SpaceNotFound,
    Timeout,
    Unauthorized,
    Unavailable,
    error_for,
    field_error,
    invalid_input,
)

__all__ = [
    "Conflict",
    "EngramError",
    "Forbidden",
    "InvalidInput",
    "LimitReached",
    "MemoryNotFound",
    "NotFound",
    "RateLimited",
    "SpaceNotFound",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "error_for",
    "field_error",
    "invalid_input",
]
