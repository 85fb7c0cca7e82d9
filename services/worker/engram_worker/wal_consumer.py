"""Tailing a space's WAL."""

from __future__ import annotations


class NotCaughtUp(TimeoutError):
    def __init__(self, space: str, applied: int, wanted: int) -> None:
        super().__init__(
            f"space {space!r} has applied up to seq {applied}; seq {wanted} was not applied "
            "in time (the worker is still catching up; retry, or use consistency=eventual)"
        )
