"""The one place the CLI turns an :class:`EngramError` into a message on stderr
and an exit code.

Exit codes (``engram space`` and ``engram memory``): ``0`` done; ``1`` not found
or a conflict (the space or memory does not exist, the space exists with other
settings); ``2`` usage: bad arguments, invalid input, no memory space given;
``3`` the gateway is unreachable or cannot answer now (no worker, NATS down);
``4`` refused: no API key, an invalid one, or one that does not cover the request.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from engram_contract.errors import EngramError, Forbidden, InvalidInput, Unauthorized, Unavailable

OK, FAILED, USAGE, UNAVAILABLE, DENIED = 0, 1, 2, 3, 4


def error(err: Console, message: str) -> None:
    """Print ``error: message`` on stderr."""
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def exit_code_for(exc: EngramError) -> int:
    if isinstance(exc, InvalidInput):
        return USAGE
    if isinstance(exc, Unavailable):
        return UNAVAILABLE
    if isinstance(exc, (Unauthorized, Forbidden)):
        return DENIED
    return FAILED  # not found, a conflict, anything else the service refused


def report(err: Console, exc: EngramError) -> int:
    """Print the error (and its hint) on stderr; the exit code for it."""
    error(err, str(exc))
    if exc.hint:
        err.print(f"  hint: {escape(exc.hint)}", highlight=False, soft_wrap=True)
    return exit_code_for(exc)
