"""What one API key may hold on NATS, enforced by the auth callout.

A key's permissions (:func:`engram_nats.authcallout.user_permissions`) keep it
inside its spaces, but inside them it could still take shared resources from
every other key: connections, subscriptions, and consumers on the shared
``ENGRAM_EVENTS`` stream (whose consumer limit, ``ENGRAM_EVENTS_MAX_CONSUMERS``,
every SSE client and event reader of the deployment shares; a durable consumer
would even outlive its creator). Per key:

- **connections**: at most ``max_connections`` open at once. The callout
  counts them from the servers' connect/disconnect events (``$SYS.ACCOUNT.*.
  CONNECT|DISCONNECT``, on its system-account connection; a connection is
  named after its key) plus the ones it has just admitted that have not
  connected yet, and refuses the next one.
- **subscriptions** are not limited per key: nats-server applies only the
  permissions of a callout's user JWT, not its ``subs``/``data``/``payload``
  limits, outside operator mode (``buildInternalNkeyUser`` in its
  accounts.go); a key's subscriptions stay within its inbox and its spaces'
  events, and its connections are limited.
- **consumers on ENGRAM_EVENTS**: every consumer a key creates is seen in the
  JetStream API audit advisory (``$JS.EVENT.ADVISORY.API``: who, which
  request); one that is durable, has no or a long inactivity threshold, does
  not deliver to the key's own inbox, or is past ``max_consumers`` of that
  key, is deleted at once. What the SDK creates (a push consumer on its inbox,
  30 s inactivity) passes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import defaultdict, deque
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from engram_nats.streams import EVENTS_STREAM

log = logging.getLogger(__name__)

USER_PREFIX = "engram-key"
#: a consumer a key creates must go idle-deleted within this (the SDK's: 30 s)
MAX_INACTIVE_S = 300.0
#: an admitted connection not yet seen connecting counts this long
PENDING_S = 5.0
CONSUMER_CREATE = f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}."
_AUDIT_HINT = CONSUMER_CREATE.encode()


def key_of(user: str) -> str | None:
    """The key id of a connection's user name (``engram-key:<id>:<hash>``)."""
    parts = user.split(":")
    if len(parts) == 3 and parts[0] == USER_PREFIX:
        return parts[1]
    return None


def consumer_problem(config: dict[str, Any], kid: str) -> str | None:
    """Why a consumer config a key asked for is not allowed, or None."""
    if config.get("durable_name"):
        return "durable consumers are not allowed"
    inactive = (config.get("inactive_threshold") or 0) / 1e9
    if not 0 < inactive <= MAX_INACTIVE_S:
        return f"inactive_threshold must be set, at most {MAX_INACTIVE_S:g} s"
    if not str(config.get("deliver_subject") or "").startswith(f"_INBOX_{kid}."):
        return f"it must deliver to the key's own inbox (_INBOX_{kid}.…)"
    return None


class KeyLimits:
    """Counts each key's connections and event consumers; deletes consumers
    past the rules. ``nc``: a service connection (global account);
    ``system``: a system-account connection (None: connections are not
    counted, said at start)."""

    def __init__(
        self,
        nc: Client,
        system: Client | None,
        *,
        max_connections: int,
        max_consumers: int,
    ) -> None:
        self.nc = nc
        self.system = system
        self.max_connections = max_connections
        self.max_consumers = max_consumers
        #: key id → {(server id, client id)}
        self._conns: dict[str, set[tuple[str, int]]] = defaultdict(set)
        #: key id → when connections were admitted that have not connected yet
        self._pending: dict[str, deque[float]] = defaultdict(deque)
        #: key id → its consumers on ENGRAM_EVENTS (name → when created)
        self._consumers: dict[str, dict[str, float]] = defaultdict(dict)
        self._subs: list[Any] = []
        self.consumers_deleted = 0

    async def start(self) -> None:
        self._subs.append(await self.nc.subscribe("$JS.EVENT.ADVISORY.API", cb=self._on_audit))
        deleted = f"$JS.EVENT.ADVISORY.CONSUMER.DELETED.{EVENTS_STREAM}.*"
        self._subs.append(await self.nc.subscribe(deleted, cb=self._on_deleted))
        if self.system is not None:
            for event in ("CONNECT", "DISCONNECT"):
                sub = await self.system.subscribe(f"$SYS.ACCOUNT.*.{event}", cb=self._on_conn)
                self._subs.append(sub)
            await self.system.flush()
        else:
            log.warning(
                "auth callout: no system-account connection: connections per key are not limited"
            )
        await self.nc.flush()

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    # -- connections ------------------------------------------------------------

    def connections(self, kid: str) -> int:
        pending = self._pending[kid]
        cutoff = time.monotonic() - PENDING_S
        while pending and pending[0] < cutoff:
            pending.popleft()
        return len(self._conns[kid]) + len(pending)

    def admit(self, kid: str) -> str | None:
        """Count a connection of ``kid`` the callout is about to admit, or say
        why it may not (when connections are counted at all)."""
        if self.system is None:
            return None
        if self.connections(kid) >= self.max_connections:
            return f"this API key has {self.max_connections} NATS connections open already"
        self._pending[kid].append(time.monotonic())
        return None

    async def _on_conn(self, msg: Msg) -> None:
        try:
            event = json.loads(msg.data)
            client = event["client"]
            kid = key_of(str(client.get("user") or ""))
            where = (str(event["server"]["id"]), int(client["id"]))
        except (ValueError, KeyError, TypeError):
            return
        if kid is None:
            return
        if event.get("type", "").endswith("client_connect"):
            self._conns[kid].add(where)
            if self._pending[kid]:
                self._pending[kid].popleft()
        else:
            self._conns[kid].discard(where)

    def seen_connections(self, found: dict[str, set[tuple[str, int]]]) -> None:
        """What a full listing of the servers' connections found (the
        callout's sweep): it replaces the counts, which events may have missed
        (the callout down or reconnecting)."""
        self._conns = defaultdict(set, found)

    # -- consumers --------------------------------------------------------------

    async def _on_audit(self, msg: Msg) -> None:
        if _AUDIT_HINT not in msg.data:  # most API calls are something else
            return
        try:
            audit = json.loads(msg.data)
            subject = str(audit.get("subject") or "")
            kid = key_of(str((audit.get("client") or {}).get("user") or ""))
            response = json.loads(audit.get("response") or "{}")
        except (ValueError, TypeError):
            return
        if kid is None or not subject.startswith(CONSUMER_CREATE) or "error" in response:
            return
        name = str(response.get("name") or "")
        config = response.get("config") or {}
        if not name:
            return
        problem = consumer_problem(config, kid)
        mine = self._consumers[kid]
        mine[name] = time.monotonic()
        if problem is None and len(mine) > self.max_consumers:
            problem = f"the key has {self.max_consumers} event consumers already"
        if problem is not None:
            await self._delete(kid, name, problem)

    async def _on_deleted(self, msg: Msg) -> None:
        name = msg.subject.rsplit(".", 1)[-1]
        for mine in self._consumers.values():
            mine.pop(name, None)

    async def _delete(self, kid: str, name: str, why: str) -> None:
        self._consumers[kid].pop(name, None)
        try:
            await self.nc.jetstream().delete_consumer(EVENTS_STREAM, name)
        except NotFoundError:
            return  # gone already (another callout instance, or idle)
        except Exception as exc:
            log.warning("auth callout: deleting consumer %s of key %s failed: %r", name, kid, exc)
            return
        self.consumers_deleted += 1
        log.warning(
            "auth callout: deleted consumer %s of key %s on %s: %s", name, kid, EVENTS_STREAM, why
        )
