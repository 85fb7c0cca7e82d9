"""Failures of the broker under a request, named as what they are.

An exception no route expected used to answer ``500 Internal error`` with the
hint "This is a bug in Engram". Most such exceptions are not bugs: NATS gone
or slow, or a JetStream limit reached (consumers of the events stream, streams,
storage). :func:`classify` turns those into a 503 (or 429) problem naming the
limit and the setting that raises it; the "bug" hint is left for what nothing
explains.
"""

from __future__ import annotations

import nats.errors
import nats.js.errors

from engram_contract.errors import EngramError, Unavailable, error_for

#: seconds after which a retry of a capacity or connection failure may succeed
RETRY_AFTER = 2.0

#: JetStream's error codes for limits, and the setting that raises each
_LIMITS: dict[int, tuple[str, str]] = {
    10026: (
        "JetStream's limit on consumers of the events stream is reached (one per SSE "
        "client and event reader)",
        "ENGRAM_EVENTS_MAX_CONSUMERS, or the account's max_consumers in nats-server",
    ),
    10027: (
        "JetStream's limit on streams is reached (one stream per memory space)",
        "the account's max_streams in nats-server (jetstream { max_streams })",
    ),
    10023: (
        "JetStream has no room for more storage",
        "nats-server's jetstream max_file_store / max_memory_store",
    ),
    10047: (
        "JetStream has insufficient resources for the request",
        "nats-server's jetstream limits (storage, max_ha_assets)",
    ),
}

_CONNECTION = (
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.NoRespondersError,
)


def classify(exc: BaseException) -> EngramError | None:
    """The problem an unexpected exception stands for, or None (a bug)."""
    if isinstance(exc, nats.js.errors.APIError):
        code = exc.err_code or 0
        if code in _LIMITS:
            what, setting = _LIMITS[code]
            return error_for(
                429 if code == 10026 else 503,
                "Capacity reached",
                f"{what} (JetStream error {code}: {exc.description})",
                hint=f"Retry later; an operator can raise {setting}.",
                retry_after=RETRY_AFTER,
                slug="capacity-reached",
            )
        return Unavailable(
            503,
            "JetStream refused",
            f"JetStream refused the request: {exc.description} (error {code})",
            hint="Retry later; if it persists, check nats-server's logs and limits.",
            retry_after=RETRY_AFTER,
        )
    if isinstance(exc, nats.errors.TimeoutError | TimeoutError):
        return Unavailable(
            503,
            "NATS unavailable",
            "NATS did not answer in time (down, partitioned or overloaded)",
            hint="Retry shortly; check nats-server if it persists.",
            retry_after=RETRY_AFTER,
        )
    if isinstance(exc, _CONNECTION):
        return Unavailable(
            503,
            "NATS unavailable",
            f"the gateway's NATS connection cannot carry the request ({type(exc).__name__})",
            hint="Retry shortly; check nats-server if it persists.",
            retry_after=RETRY_AFTER,
        )
    return None
