"""HTTP routes by resource. Thin: validate, then hand over to the bridge."""

from engram_gateway.routes import (
    consolidate,
    events,
    health,
    keys,
    legacy,
    links,
    memories,
    recall,
    spaces,
    status,
    transfer,
)

#: Every route, in the order the OpenAPI document lists them.
ROUTES = [
    *health.ROUTES,
    *status.ROUTES,
    *spaces.ROUTES,
    *memories.ROUTES,
    *recall.ROUTES,
    *links.ROUTES,
    *consolidate.ROUTES,
    *events.ROUTES,
    *transfer.ROUTES,
    *legacy.ROUTES,
    *keys.ROUTES,
]

__all__ = ["ROUTES"]
