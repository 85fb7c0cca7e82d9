"""Who may do what over HTTP: API keys (``Authorization: Bearer``), roles, spaces.

Every route handler declares what it needs in its ``opt``: :data:`OPEN` (the
probes, ``/health``, ``/ready``, ``/metrics``), :data:`READ`, :data:`WRITE` or
:data:`ADMIN` (also what a handler that declares nothing needs). One guard,
:func:`authorize`, runs before every handler: it finds the request's principal
(its key, or — when keys are not required and none is sent — an unchecked
admin), checks the role, resolves the request's space (the path's, or a legacy
route's header / query / default) and checks that the key covers it. A key used
outside its spaces gets the same 403 whether the other space exists or not; a
scoped key cannot create spaces (a write to a space that does not exist is a
404, not an auto-creation).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from typing import TYPE_CHECKING, Any, cast

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from engram_contract.errors import Forbidden, RateLimited, Unauthorized, space_not_found
from engram_contract.keys import NOBODY_CHECKED, Principal, Role
from engram_contract.settings import GatewaySettings
from engram_gateway.spaces import RESOLVED_SPACE
from engram_nats.keys import KeyStore

if TYPE_CHECKING:
    from engram_gateway.bridge import NatsBridge

log = logging.getLogger(__name__)
audit = logging.getLogger("engram.audit")

OPEN: dict[str, Any] = {"auth": "open"}
READ: dict[str, Any] = {"role": "read"}
WRITE: dict[str, Any] = {"role": "write"}
ADMIN: dict[str, Any] = {"role": "admin"}
#: a legacy route: its space comes from X-Memory-Space / ?space= / the default
LEGACY = {"space": "legacy"}

PRINCIPAL = "engram.principal"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def keys_required(settings: GatewaySettings) -> bool:
    """``ENGRAM_AUTH``: required, off, or (auto) required unless the gateway
    listens on loopback only."""
    if settings.auth == "auto":
        return not loopback(settings.http_host)
    return settings.auth == "required"


class RateLimiter:
    """A token bucket per API key (in this process): ``rate`` requests a second,
    ``burst`` at once."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(2 * rate)))
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key id → (tokens, at)

    def wait(self, key: str) -> float:
        """Take a token for ``key``: 0 when there was one, else the seconds until
        there will be (nothing is taken then)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._buckets.clear()  # a flood of distinct keys: start again, full
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0


class Gatekeeper:
    """The keys one gateway process checks requests against, and their rates."""

    def __init__(self, keys: KeyStore, required: bool, limiter: RateLimiter | None = None) -> None:
        self.keys = keys
        self.required = required
        self.limiter = limiter or RateLimiter(0.0, 0)

    def throttle(self, principal: Principal) -> None:
        """429 when the key is over its rate (requests without a key are not limited)."""
        if principal is NOBODY_CHECKED:
            return
        wait = self.limiter.wait(principal.key_id)
        if wait > 0:
            raise RateLimited(
                429,
                "Too many requests",
                f"API key {principal.key_id} is over its rate limit of "
                f"{self.limiter.rate:g} requests/s",
                hint="Retry after the Retry-After seconds; ENGRAM_RATE_LIMIT sets the rate.",
                retry_after=wait,
                slug="rate-limited",
            )

    def principal(self, authorization: str | None) -> Principal:
        if authorization is None:
            if self.required:
                raise Unauthorized(
                    401,
                    "Unauthorized",
                    "this request needs an API key",
                    hint="Send Authorization: Bearer <key> (engram key create; the CLI and "
                    "SDK read ENGRAM_API_KEY).",
                    slug="unauthorized",
                )
            return NOBODY_CHECKED
        scheme, _, key = authorization.partition(" ")
        principal = None
        if scheme.lower() == "bearer" and key.strip():
            principal = self.keys.authenticate(key.strip())
        if principal is None:
            raise Unauthorized(
                401,
                "Unauthorized",
                "the API key is not valid (unknown, revoked or malformed)",
                hint="Send Authorization: Bearer <key> with a key from engram key create.",
                slug="unauthorized",
            )
        return principal


def forbidden(role: Role, space: str | None) -> Forbidden:
    what = {"read": "read", "write": "write to", "admin": "administer"}[role]
    where = f"memory space {space!r}" if space is not None else "this resource"
    return Forbidden(
        403,
        "Forbidden",
        f"this API key may not {what} {where}",
        hint="Use a key whose spaces and role cover the request (engram key list).",
        slug="forbidden",
    )


def required_role(handler: BaseRouteHandler, path: str) -> Role | None:
    """What a handler needs: None for an open one; the OpenAPI pages (which declare
    nothing) need any valid key; every other handler that declares nothing, admin."""
    opt = handler.opt
    if opt.get("auth") == "open":
        return None
    role = opt.get("role")
    if role is None:
        return "read" if path.startswith("/schema") else "admin"
    return cast("Role", role)


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The guard of every route (see the module's docstring)."""
    role = required_role(handler, connection.url.path)
    if role is None:
        return
    liveness = getattr(connection.app.state.bridge, "liveness", None)
    if liveness is not None:
        await liveness.usable()  # NATS gone for a while: 503 now, not a timeout later
    gate: Gatekeeper = connection.app.state.auth
    principal = gate.principal(connection.headers.get("authorization"))
    scope = cast("dict[str, Any]", connection.scope)
    scope[PRINCIPAL] = principal
    gate.throttle(principal)
    path_space = connection.path_params.get("space")
    if path_space is None and handler.opt.get("space") != "legacy":
        if not principal.has(role):
            raise forbidden(role, None)
        return
    # the space first: an invalid id is the same 400 for every key and role
    space = connection.app.state.spaces.resolve(connection, path_space)
    scope[RESOLVED_SPACE] = space
    await admit(principal, role, space, connection.app.state.bridge)


async def admit(principal: Principal, role: Role, space: str, bridge: NatsBridge) -> None:
    """Raise unless ``principal`` may act with ``role`` on ``space`` (HTTP and gRPC):
    403 outside its spaces or role, whether the space exists or not; a scoped key
    writes only to spaces an admin created (404 otherwise)."""
    if not principal.may(role, space):
        raise forbidden(role, space)
    if role == "write" and not principal.admin:
        rec = await bridge.spaces.record(space)
        if rec is None:
            raise space_not_found(
                space, "An API key scoped to spaces cannot create them; ask an admin."
            )


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """Who the request acts as (set by :func:`authorize`; an open route's is nobody)."""
    return cast("Principal", connection.scope.get(PRINCIPAL, NOBODY_CHECKED))


def require(connection: ASGIConnection[Any, Any, Any, Any], role: Role, space: str | None) -> None:
    """For a handler that decides about a space itself (status): raise 403 unless
    the request's key may act with ``role`` on ``space`` (None: on all of them)."""
    if not principal_of(connection).may(role, space):
        raise forbidden(role, space)


def audit_log(connection: ASGIConnection[Any, Any, Any, Any], action: str, **what: Any) -> None:
    """One structured line per admin action (never a secret)."""
    audit_line(principal_of(connection), action, **what)


def audit_line(principal: Principal, action: str, **what: Any) -> None:
    """The audit line of an admin action by ``principal`` (HTTP and gRPC)."""
    fields = " ".join(f"{k}={v!r}" for k, v in what.items())
    audit.info("audit action=%s by_key=%s %s", action, principal.key_id, fields)


__all__ = [
    "ADMIN",
    "LEGACY",
    "OPEN",
    "READ",
    "WRITE",
    "Gatekeeper",
    "admit",
    "audit_line",
    "audit_log",
    "authorize",
    "keys_required",
    "principal_of",
    "require",
]
