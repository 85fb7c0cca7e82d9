"""The Engram Python SDK: one async interface, two transports.

``EngramClient.http(url)`` talks to the gateway; ``EngramClient.nats(url)``
publishes commands straight into the spaces' WALs and requests queries on
``spaces.<id>.q.*``. Both return the models of :mod:`engram_contract.messages`
and raise the errors of :mod:`engram_client.errors`. See docs/sdk.md.
"""

from engram_client.base import (
    EVENT_MODELS,
    Event,
    EventData,
    EventStream,
    SpaceInfo,
    Written,
)
from engram_client.core import EngramClient, Space
from engram_client.errors import (
    Conflict,
    EngramError,
    InvalidInput,
    LimitReached,
    MemoryNotFound,
    NotFound,
    SpaceNotFound,
    Timeout,
    Unavailable,
)

__all__ = [
    "EVENT_MODELS",
    "Conflict",
    "EngramClient",
    "EngramError",
    "Event",
    "EventData",
    "EventStream",
    "InvalidInput",
    "LimitReached",
    "MemoryNotFound",
    "NotFound",
    "Space",
    "SpaceInfo",
    "SpaceNotFound",
    "Timeout",
    "Unavailable",
    "Written",
]
