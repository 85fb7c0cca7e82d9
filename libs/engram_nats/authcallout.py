"""The NATS auth callout: an agent connects with its API key as the token and
gets a NATS user limited to its spaces.

nats-server (>= 2.10, ``authorization { auth_callout { … } }``) asks
``$SYS.REQ.USER.AUTH`` about every connection that is not one of its
``auth_users``, with a JWT signed by the server: the connection's options
(``connect_opts.auth_token``: the key), the nkey the server made up for the
user and the server's id. This service checks the key against the key store
(:class:`~engram_nats.keys.KeyStore`, the same as the gateway's) and answers
with an authorization response signed by the issuer nkey: a user JWT with the
key's permissions (:func:`user_permissions`), or an error, which refuses the
connection. No answer (the service down) refuses it too, after the server's
auth timeout: a connection is never let in unchecked.

A revoked key (or a replaced ``ENGRAM_ADMIN_KEY``) loses its open connections
too: every connection is named after its key (``engram-key:<id>:<hash prefix>``),
and the service, connected to the system account, lists the connections
(``$SYS.REQ.SERVER.PING.CONNZ``) whenever a key disappears from the store and
every :data:`SWEEP_S` seconds, and disconnects those whose key is gone
(``$SYS.REQ.SERVER.<id>.KICK``). The client reconnects, asks the callout
again and is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import Field

from engram_contract.keys import Principal, key_hash, key_id
from engram_contract.settings import CommonSettings
from engram_contract.subjects import KEYS_BUCKET, REGISTRY_BUCKET
from engram_nats import natsjwt
from engram_nats.callout_setup import SYSTEM_USER, CalloutSecrets, with_user
from engram_nats.connection import connect, gather
from engram_nats.keylimits import USER_PREFIX, KeyLimits, key_of
from engram_nats.keys import KeyStore
from engram_nats.streams import EVENTS_STREAM

log = logging.getLogger(__name__)

CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
CALLOUT_QUEUE = "engram-auth-callout"
#: non-operator mode: users the callout admits go to the global account
GLOBAL_ACCOUNT = "$G"
#: how often every open connection is checked against the keys
SWEEP_S = 30.0
#: how often the key store is looked at for keys that went away
WATCH_S = 0.2
CONNZ_PAGE = 1024

READ_QUERIES = ("recall", "get", "list", "stats", "export")
WRITE_QUERIES = ("consolidate",)
#: the commands a write key publishes (reinforce and consolidate are the workers')
WRITE_COMMANDS = ("remember", "forget", "link")


def inbox_prefix(key: str) -> str:
    """The reply-inbox prefix a connection with ``key`` must use: its own, so no
    key can subscribe to the replies another key's requests get."""
    kid = key_id(key)
    return f"_INBOX_{kid}" if kid is not None and kid.isalnum() else "_INBOX"


def user_permissions(principal: Principal, inbox: str) -> dict[str, Any]:
    """The ``pub``/``sub``/``resp`` permissions of a key's NATS user (for an
    admin key: everything but :data:`CALLOUT_SUBJECT`).

    Per space S: the commands of its role (``spaces.S.remember|forget|link``
    for write keys), its queries (``spaces.S.q.<name>``; ``consolidate`` for
    write keys), reading S's own record in the registry (a direct get of one
    key of KV ``ENGRAM_SPACES``: its dim and embedder), and a JetStream consumer
    on ``ENGRAM_EVENTS`` filtered to S's events (the create call whose subject
    names the filter, which the server checks against the consumer's); it may
    subscribe to S's events and to its own inbox, and answer what it received
    (JetStream flow control). Publishing a command needs no JetStream API: the
    PubAck comes back on the reply inbox.
    """
    if principal.admin:
        # everything but the callout's own requests, which carry the keys of the
        # agents connecting (plain, as they sent them)
        deny = {"deny": [CALLOUT_SUBJECT]}
        return {"pub": dict(deny), "sub": dict(deny)}
    pub: list[str] = []
    sub: list[str] = [f"{inbox}.>"]
    queries = READ_QUERIES + (WRITE_QUERIES if principal.has("write") else ())
    for space in sorted(principal.spaces):
        if principal.has("write"):
            pub += [f"spaces.{space}.{verb}" for verb in WRITE_COMMANDS]
        pub += [f"spaces.{space}.q.{name}" for name in queries]
        pub.append(f"$JS.API.DIRECT.GET.KV_{REGISTRY_BUCKET}.$KV.{REGISTRY_BUCKET}.{space}")
        pub.append(f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.*.spaces.{space}.evt.>")
        sub.append(f"spaces.{space}.evt.>")
    return {"pub": {"allow": pub}, "sub": {"allow": sub}, "resp": {"max": 1, "ttl": 0}}


def user_name(kid: str, hashed: str) -> str:
    """What a key's connections are named (never the secret: a hash prefix)."""
    return f"{USER_PREFIX}:{kid}:{hashed[:12]}"


class CalloutSettings(CommonSettings):
    """``engram auth-callout``."""

    nats_issuer_seed: str = Field(
        default="",
        description="The account nkey seed (SA…) whose public key is the server's "
        "auth_callout issuer (ENGRAM_NATS_ISSUER_SEED).",
    )
    nats_system_url: str = Field(
        default="",
        description="A system-account user's URL (nats://user:password@host:4222): "
        "how open connections of revoked keys are disconnected. Empty: they are not.",
    )
    admin_key: str | None = Field(default=None, description="ENGRAM_ADMIN_KEY, as the gateway.")
    nats_key_max_connections: int = Field(
        default=100,
        ge=1,
        description="Most NATS connections one (non-admin) API key may have open at once "
        "(counted over every server; needs ENGRAM_NATS_SYSTEM_URL).",
    )
    nats_key_max_consumers: int = Field(
        default=32,
        ge=1,
        description="Most consumers one API key may have on ENGRAM_EVENTS (event readers).",
    )


class AuthCallout:
    """Answers ``$SYS.REQ.USER.AUTH`` on ``nc`` (a service user's connection)."""

    def __init__(
        self,
        nc: Client,
        keys: KeyStore,
        issuer_seed: bytes,
        system: Client | None = None,
        limits: KeyLimits | None = None,
    ) -> None:
        self.nc = nc
        self.keys = keys
        self.system = system
        self.limits = limits
        self._issuer = natsjwt.keypair(issuer_seed)
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self.admitted = 0
        self.refused = 0
        self.kicked = 0
        #: the connection names this service admitted whose key it still has to see go
        self._admitted: set[str] = set()

    @property
    def issuer_public(self) -> str:
        return natsjwt.public_key(self._issuer)

    async def start(self) -> None:
        if self.system is not None:
            await self._check_system()
        if self.limits is not None:
            await self.limits.start()
        self._sub = await self.nc.subscribe(CALLOUT_SUBJECT, CALLOUT_QUEUE, cb=self._on_request)
        await self.nc.flush()
        if self.system is not None:
            self._task = asyncio.create_task(self._guard(), name="auth-callout-revocations")

    async def stop(self) -> None:
        if self.limits is not None:
            await self.limits.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _check_system(self) -> None:
        """The system connection must be in the system account: elsewhere the
        connection lists still answer (for that account) but KICK does not."""
        assert self.system is not None
        reply = await self.system.request("$SYS.REQ.USER.INFO", b"", timeout=5)
        account = (json.loads(reply.data).get("data") or {}).get("account")
        if account == GLOBAL_ACCOUNT:
            raise ValueError(
                "ENGRAM_NATS_SYSTEM_URL connects a user of the global account, not of the "
                "system account: revoked keys' connections could not be cut"
            )

    # -- answering ------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        try:
            claims = natsjwt.decode(msg.data.decode())
            request = claims["nats"]
            user_nkey = str(request["user_nkey"])
            server_id = str(request["server_id"]["id"])
        except (natsjwt.JwtError, KeyError, TypeError, UnicodeDecodeError) as exc:
            log.error("auth callout: unreadable authorization request: %s", exc)
            return  # the server refuses the connection when its time is up
        client = request.get("client_info") or {}
        token = (request.get("connect_opts") or {}).get("auth_token") or ""
        answer = self.answer(user_nkey, server_id, token, client)
        if msg.reply:
            await self.nc.publish(msg.reply, answer.encode())

    def answer(self, user_nkey: str, server_id: str, token: str, client: dict[str, Any]) -> str:
        """The signed authorization response for a connection presenting ``token``."""
        who = f"{client.get('host', '?')} cid {client.get('id', '?')} ({client.get('name') or '-'})"
        principal = self.keys.authenticate(token) if token else None
        response: dict[str, Any] = {
            "sub": user_nkey,
            "aud": server_id,
            "nats": {"type": "authorization_response", "version": natsjwt.CLAIMS_VERSION},
        }
        reason = None
        if principal is None:
            reason = "an API key is required" if not token else "the API key is not valid"
        elif not principal.admin and self.limits is not None:
            reason = self.limits.admit(principal.key_id)
        if principal is None or reason is not None:
            self.refused += 1
            log.info("auth callout: refused %s: %s", who, reason)
            response["nats"]["error"] = reason
            return natsjwt.encode(response, self._issuer)
        self.admitted += 1
        name = user_name(principal.key_id, key_hash(token))
        if self.system is not None:
            self._admitted.add(name)
        user = {
            "sub": user_nkey,
            "aud": GLOBAL_ACCOUNT,
            "name": name,
            "nats": {
                **user_permissions(principal, inbox_prefix(token)),
                # limits here are not applied by nats-server to callout users
                # outside operator mode (only the permissions are): KeyLimits
                "subs": -1,
                "data": -1,
                "payload": -1,
                "type": "user",
                "version": natsjwt.CLAIMS_VERSION,
            },
        }
        log.info("auth callout: admitted %s as key %s (%s)", who, principal.key_id, principal.role)
        response["nats"]["jwt"] = natsjwt.encode(user, self._issuer)
        return natsjwt.encode(response, self._issuer)

    # -- revocations ----------------------------------------------------------

    def _live(self) -> set[str]:
        return {user_name(r.id, r.hash) for r in self.keys.list()}

    async def _guard(self) -> None:
        """Sweep when a key this service admitted has gone from the store, and
        every :data:`SWEEP_S` seconds (revocations while it was down, or made
        before another instance admitted the connection)."""
        last = -SWEEP_S
        while True:
            gone = self._admitted - self._live()
            now = time.monotonic()
            if gone or now - last >= SWEEP_S:
                try:
                    await self.sweep()
                    last = now
                    self._admitted -= gone
                except Exception as exc:  # NATS away: the next round tries again
                    log.warning("auth callout: sweeping connections failed: %r", exc)
            await asyncio.sleep(WATCH_S)

    async def sweep(self) -> int:
        """Disconnect every connection of a key that is no longer in the store;
        how many were. The keys are read after the connections are listed: a
        connection listed was admitted before, so its key missing now means
        revoked."""
        assert self.system is not None
        kicked = 0
        offset = 0
        found: dict[str, set[tuple[str, int]]] = {}
        while True:
            query = {"auth": True, "offset": offset, "limit": CONNZ_PAGE}
            answers = await gather(
                self.system, "$SYS.REQ.SERVER.PING.CONNZ", json.dumps(query).encode(), wait=2.0
            )
            live = self._live()
            more = False
            for raw in answers:
                data = json.loads(raw)
                server_id = data["server"]["id"]
                conns = (data.get("data") or {}).get("connections") or []
                more = more or len(conns) >= CONNZ_PAGE
                for conn in conns:
                    name = str(conn.get("authorized_user") or "")
                    if name.startswith(f"{USER_PREFIX}:") and name not in live:
                        await self._kick(server_id, int(conn["cid"]), name)
                        kicked += 1
                    elif (kid := key_of(name)) is not None:
                        found.setdefault(kid, set()).add((server_id, int(conn["cid"])))
            if not more:
                if self.limits is not None:
                    self.limits.seen_connections(found)
                return kicked
            offset += CONNZ_PAGE

    async def _kick(self, server_id: str, cid: int, name: str) -> None:
        assert self.system is not None
        kid = name.split(":")[1]
        try:
            await self.system.request(
                f"$SYS.REQ.SERVER.{server_id}.KICK", json.dumps({"cid": cid}).encode(), timeout=2
            )
        except Exception as exc:
            log.warning("auth callout: disconnecting cid %d of key %s failed: %r", cid, kid, exc)
            return
        self.kicked += 1
        log.info("auth callout: disconnected cid %d on %s: key %s was revoked", cid, server_id, kid)


def with_auth_dir(settings: CalloutSettings) -> CalloutSettings:
    """``settings`` with the issuer seed and the system user's URL taken from
    ``ENGRAM_NATS_AUTH_DIR`` where they are not set themselves."""
    if settings.nats_auth_dir is None:
        return settings
    secrets = CalloutSecrets.read(settings.nats_auth_dir)
    update: dict[str, str] = {}
    if not settings.nats_issuer_seed:
        update["nats_issuer_seed"] = secrets.issuer_seed.decode()
    if not settings.nats_system_url:
        update["nats_system_url"] = with_user(
            settings.nats_url, SYSTEM_USER, secrets.system_password
        )
    return settings.model_copy(update=update)


async def run(settings: CalloutSettings, ready: asyncio.Event | None = None) -> None:
    """The ``engram auth-callout`` process: until SIGINT/SIGTERM."""
    settings = with_auth_dir(settings)
    if not settings.nats_issuer_seed:
        raise ValueError(
            "ENGRAM_NATS_ISSUER_SEED is not set: the account nkey seed whose public key "
            "is the nats-server's auth_callout issuer (engram dev writes one to "
            ".engram/nats-auth/issuer.nk; `engram nats-auth init DIR` for a deployment, "
            "then ENGRAM_NATS_AUTH_DIR=DIR)"
        )
    nc = await connect(settings.nats_url, "engram-auth-callout")
    system = None
    if settings.nats_system_url:
        system = await connect(settings.nats_system_url, "engram-auth-callout-sys")
    else:
        log.warning(
            "auth callout: no ENGRAM_NATS_SYSTEM_URL: connections of revoked keys stay "
            "open until they reconnect"
        )
    keys = KeyStore(nc.jetstream(), replicas=settings.stream_replicas)
    limits = KeyLimits(
        nc,
        system,
        max_connections=settings.nats_key_max_connections,
        max_consumers=settings.nats_key_max_consumers,
    )
    callout = AuthCallout(
        nc,
        keys,
        settings.nats_issuer_seed.encode(),
        system,
        limits=limits,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await keys.start()
        if settings.admin_key:
            await keys.set_operator_key(settings.admin_key)
        await callout.start()
        log.info(
            "auth callout: answering %s as issuer %s (keys from KV %s)",
            CALLOUT_SUBJECT,
            callout.issuer_public,
            KEYS_BUCKET,
        )
        print(f"engram auth-callout ready (issuer {callout.issuer_public})", flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await callout.stop()
        await keys.close()
        for conn in (system, nc):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.drain()
