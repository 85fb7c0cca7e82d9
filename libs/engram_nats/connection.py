"""Connecting to NATS, and requests every worker answers.

Credentials: an Engram process (gateway, worker, the auth callout, the CLI's
direct NATS commands) connects with the service user of a NATS that requires
authentication, taken from ``ENGRAM_NATS_USER`` / ``ENGRAM_NATS_PASSWORD``, or
from the directory ``engram nats-auth init`` wrote (``ENGRAM_NATS_AUTH_DIR``), or
from the URL itself (``nats://user:password@host:4222``); an agent connects
with its API key as the token (``token=``), never with the service user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from engram_nats.callout_setup import SERVICE_USER, CalloutSecrets

log = logging.getLogger(__name__)
T = TypeVar("T")


#: the service user's name and password (a NATS with auth callout, see docs/security.md)
USER_ENV = "ENGRAM_NATS_USER"
PASSWORD_ENV = "ENGRAM_NATS_PASSWORD"
#: or the directory of the deployment's NATS auth secrets (``engram nats-auth init``)
AUTH_DIR_ENV = "ENGRAM_NATS_AUTH_DIR"


def service_credentials() -> dict[str, str]:
    """``user`` and ``password`` for :func:`nats.connect` from the environment:
    ``ENGRAM_NATS_USER``/``ENGRAM_NATS_PASSWORD``, else the service user of
    ``ENGRAM_NATS_AUTH_DIR``, else nothing."""
    user = os.environ.get(USER_ENV)
    if user:
        return {"user": user, "password": os.environ.get(PASSWORD_ENV, "")}
    auth_dir = os.environ.get(AUTH_DIR_ENV)
    if auth_dir:
        secrets = CalloutSecrets.read(Path(auth_dir))
        return {"user": SERVICE_USER, "password": secrets.service_password}
    return {}


async def connect(
    url: str,
    name: str,
    attempts: int = -1,
    *,
    token: str | None = None,
    inbox_prefix: str | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> Client:
    """Connect with unlimited reconnects (the broker may restart under us), or
    ``attempts`` of them (a command-line tool should fail, not hang). With a
    ``token`` (an agent's API key) the connection authenticates with it alone;
    without one, with the credentials in ``url`` if it has any, else with the
    service credentials (:func:`service_credentials`). ``on_error`` also sees
    every asynchronous error the server reports (a permissions violation)."""

    refused: list[Exception] = []  # the server's "Authorization Violation", if it said so

    async def error_cb(exc: Exception) -> None:
        if "authorization violation" in str(exc).lower():
            refused[:] = [exc]
        if on_error is not None:
            on_error(exc)
        log.warning("nats: %s", exc)

    auth: dict[str, str] = {}
    if token is not None:
        auth["token"] = token
    elif "@" not in url:  # credentials in the URL are the ones meant (the callout's system user)
        auth.update(service_credentials())
    if inbox_prefix is not None:
        auth["inbox_prefix"] = inbox_prefix
    try:
        return await nats.connect(
            url.split(","),
            name=name,
            max_reconnect_attempts=attempts,
            reconnect_time_wait=0.5,
            error_cb=error_cb,
            **auth,
        )
    except nats.errors.NoServersError:
        # every try was refused: say why (a wrong key or password), not "no servers"
        if refused:
            raise refused[0] from None
        raise


#: waits between tries of a JetStream call that timed out while a cluster settles
SETTLE_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


async def settled(call: Callable[[], Awaitable[T]], what: str) -> T:
    """``call()``, tried again while it times out: a JetStream cluster that has just
    formed, or a stream just created in one, may not answer until it has a leader
    (seconds on a busy machine)."""
    for delay in SETTLE_BACKOFF:
        try:
            return await call()
        except nats.errors.TimeoutError:
            log.info("nats: %s timed out (a cluster settling?); trying again", what)
            await asyncio.sleep(delay)
    return await call()


async def gather(
    nc: Client, subject: str, payload: bytes, *, wait: float, quiet: float = 0.25
) -> list[bytes]:
    """Publish a request every worker answers and collect the answers: wait up to
    ``wait`` seconds for the first, then stop once ``quiet`` seconds pass without
    another. An empty "no responders" status reply is left out."""
    inbox = nc.new_inbox()
    answers: list[bytes] = []
    got = asyncio.Event()

    async def on_reply(msg: Msg) -> None:
        if msg.data or not msg.headers:  # a no-responders status has headers, no data
            answers.append(msg.data)
        got.set()

    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        await nc.publish(subject, payload, reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        seen = -1
        while (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(got.wait(), min(quiet, left) if seen >= 0 else left)
            except TimeoutError:
                if seen >= 0:
                    break
            got.clear()
            seen = len(answers)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return answers
