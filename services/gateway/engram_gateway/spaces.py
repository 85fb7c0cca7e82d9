"""Which memory space a request is about: the one resolver every route calls.

A space-scoped route (``/api/v1/spaces/{space}/…``) names its space in the path;
an ``X-Memory-Space`` header naming another one is a 400. A legacy route
(``/api/v1/memories``, ``/api/v1/recall``) takes ``X-Memory-Space``, then
``?space=``, then — only while ``ENGRAM_REQUIRE_EXPLICIT_SPACE=false`` — the
default space, marking the response deprecated (see :func:`deprecation_headers`).
"""

from __future__ import annotations

import collections
import logging
from typing import Any, cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

from engram_contract.errors import error_for
from engram_contract.ids import space_id_problem
from engram_contract.settings import GatewaySettings
from engram_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

HEADER = "x-memory-space"
MISSING = "Missing memory_space_id. Set --space or X-Memory-Space header."
#: the scope key under which the route's guard leaves the space it resolved
RESOLVED_SPACE = "engram.space"
#: the scope key that marks a request as served from the default space by fallback
_FALLBACK = "engram.space_fallback"


def checked_space(space: str) -> str:
    """The one place a space id from a request is validated."""
    problem = space_id_problem(space)
    if problem is not None:
        raise error_for(
            400,
            "Invalid space id",
            problem,
            slug="invalid-space-id",
            hint="Use e.g. 'agent-42' or 'support_bot'.",
        )
    return space


class SpaceResolver:
    """Resolves a request's space; one per app (it remembers which clients it has
    warned about the default-space fallback, at most ``max_clients`` of them)."""

    def __init__(
        self, settings: GatewaySettings, metrics: GatewayMetrics, max_clients: int = 10_000
    ) -> None:
        self.default_space = settings.default_space
        self.require_explicit = settings.require_explicit_space
        self.metrics = metrics
        self.max_clients = max_clients
        self._warned: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()

    def resolve(self, request: ASGIConnection[Any, Any, Any, Any], path_space: str | None) -> str:
        header = request.headers.get(HEADER)
        if path_space is not None:
            checked_space(path_space)
            if header is not None and header != path_space:
                raise error_for(
                    400,
                    "Conflicting memory space",
                    f"the X-Memory-Space header names {header!r} but the path names {path_space!r}",
                    slug="conflicting-space",
                    hint="Drop the X-Memory-Space header or make it match the path.",
                )
            return path_space
        if header is not None:
            return checked_space(header)
        query = request.query_params.get("space")
        if query is not None:
            return checked_space(query)
        if self.require_explicit:
            raise error_for(
                400,
                "Missing memory space",
                MISSING,
                slug="missing-space",
                hint="Send an X-Memory-Space header or ?space=, or use "
                "/api/v1/spaces/{space}/… routes.",
            )
        self._fallback(request)
        return self.default_space

    def _fallback(self, request: ASGIConnection[Any, Any, Any, Any]) -> None:
        cast("dict[str, Any]", request.scope)[_FALLBACK] = self.default_space
        self.fallback(
            request.client.host if request.client else "",
            request.headers.get("user-agent", ""),
            f"{request.scope.get('method', '')} {request.url.path}",
            "set the X-Memory-Space header or ?space=",
        )

    def fallback(self, host: str, agent: str, what: str, how: str) -> str:
        """The default space for a request that named none (``what``, e.g. ``POST
        /api/v1/recall``): counted, and logged once per client (``host``, ``agent``)
        with ``how`` to name one. Only while explicit spaces are not required."""
        self.metrics.default_fallback.inc()
        client = (host, agent)
        if client in self._warned:
            self._warned.move_to_end(client)
            return self.default_space
        self._warned[client] = None
        if len(self._warned) > self.max_clients:
            self._warned.popitem(last=False)
        log.warning(
            "client %s (User-Agent %r) sent %s without a memory space: using the "
            "default space %r; %s (ENGRAM_REQUIRE_EXPLICIT_SPACE=true rejects such requests)",
            host or "?",
            agent,
            what,
            self.default_space,
            how,
        )
        return self.default_space


def resolve_space(request: Request[Any, Any, Any], path_space: str | None) -> str:
    """The space ``request`` is about (``path_space``: the path's, None on legacy
    routes); raises a 400 :class:`EngramError` when there is none or two disagree.
    The route's guard resolved it already (to check the key's scope): that answer."""
    resolved = request.scope.get(RESOLVED_SPACE)
    if resolved is not None:
        return cast("str", resolved)
    resolver: SpaceResolver = request.app.state.spaces
    return resolver.resolve(request, path_space)


async def deprecation_headers(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook: a response served from the default space by
    fallback says so (``Deprecation``, ``Warning``), error responses included."""
    if message["type"] != "http.response.start":
        return
    space = cast("dict[str, Any]", scope).get(_FALLBACK)
    if space is None:
        return
    headers = MutableScopeHeaders.from_message(message)
    headers["Deprecation"] = "true"
    headers["Warning"] = (
        f"299 - \"No memory space given: used the default space '{space}'. "
        'Set the X-Memory-Space header or ?space= (CLI: --space)."'
    )
