"""Engram's application protocol on NATS, as every client of the spaces speaks it:
commands published into a space's WAL (pipelined, each acknowledged), queries
requested of the worker hosting the space, and their failures as
:mod:`engram_contract.errors`.

Used by the gateway and by the SDK's NATS transport through
:class:`engram_nats.service.MemoryService`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from engram_contract.errors import EngramError, LimitReached, Timeout, Unavailable, error_for
from engram_contract.messages import Model
from engram_contract.subjects import CommandVerb, QueryName, command_subject, query_subject
from engram_contract.subjects import stream_name as wal_stream

log = logging.getLogger(__name__)

#: Waits between retries of a request nobody answered: a worker that is
#: starting (or has just subscribed) can miss a request by a few ms.
NO_RESPONDERS_BACKOFF = (0.02, 0.05, 0.1, 0.2, 0.4)
#: A write JetStream did not acknowledge in time (some messages may be stored).
ACK_TIMEOUTS: tuple[type[BaseException], ...] = (
    TimeoutError,
    nats.errors.TimeoutError,
    nats.js.errors.TooManyStalledMsgsError,
)
#: NATS cannot be reached now (closed, or reconnecting with a full buffer).
UNREACHABLE: tuple[type[BaseException], ...] = (
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionClosedError,
)
#: A write refused or lost on the way (no stream, an API error, NATS unreachable).
WRITE_FAILURES: tuple[type[BaseException], ...] = (
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.APIError,
    *UNREACHABLE,
)
#: Seconds a client should wait before retrying what NATS could not do now.
RETRY_AFTER = 1.0
#: Seconds to wait for a batch's acks before publishing the unacknowledged again
ACK_WAIT = 2.0
#: Publish failures worth another try with the same message ids (not "no stream":
#: a missing stream fails at once)
RETRYABLE: tuple[type[BaseException], ...] = (
    *ACK_TIMEOUTS,
    nats.js.errors.ServiceUnavailableError,
    *UNREACHABLE,
)


def encode(body: Model | dict[str, Any] | bytes) -> bytes:
    """A command or query body as it goes on the wire (JSON, unset fields left out;
    bytes are JSON already)."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, Model):
        return body.model_dump_json(exclude_none=True).encode()
    return json.dumps(body).encode()


async def publish(
    js: JetStreamContext,
    space: str,
    messages: Iterable[tuple[CommandVerb, str, bytes]],
    *,
    timeout: float,
) -> int:
    """Publish ``(verb, command_id, body)`` messages into ``space``'s WAL in order,
    pipelined; return the last acknowledged stream sequence.

    Each message carries ``Nats-Msg-Id = command_id``: a retry with the same ids
    inside the duplicate window is acknowledged without being stored twice. So
    when acks stop coming for :data:`ACK_WAIT` seconds (a NATS node lost, a
    stream electing a new leader), the unacknowledged messages are published
    again, from the first one on, until ``timeout``; only then is
    :class:`Unavailable` raised.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    batch = list(messages)
    seqs: list[int] = []
    failure: BaseException | None = None
    while batch:
        acks, failure = await _publish_once(js, space, batch, deadline)
        seqs += acks
        batch = batch[len(acks) :]
        if not batch:
            break
        if loop.time() >= deadline or not isinstance(failure, RETRYABLE):
            break
        if isinstance(failure, ACK_TIMEOUTS):
            # one message on its own, waited for: a refusal that publish_async
            # swallows (nats-py raises it in its reply callback, the future never
            # ends) comes back as an error here — a full WAL above all
            try:
                seqs.append(await _publish_one(js, space, batch[0], deadline))
                batch = batch[1:]
                continue
            except FULL as exc:
                raise wal_full(space, len(seqs)) from exc
            except WRITE_FAILURES as exc:
                failure = exc
        log.info(
            "space %s: %d message(s) not acknowledged (%r); publishing again",
            space,
            len(batch),
            failure,
        )
        await asyncio.sleep(min(0.25, max(deadline - loop.time(), 0)))
    if not batch:
        return max(seqs)
    if isinstance(failure, ACK_TIMEOUTS):
        raise Unavailable(
            503,
            "Not acknowledged",
            f"JetStream did not acknowledge the write to space {space!r} in time; "
            "some memories may be stored",
            hint="Retry with the same idempotency key: stored memories are not duplicated.",
            retry_after=RETRY_AFTER,
        ) from None
    if isinstance(failure, nats.js.errors.NoStreamResponseError):
        # the space's record exists (it was checked) but nothing takes its subjects
        raise Unavailable(
            503,
            "Space unavailable",
            f"memory space {space!r} is unavailable: its WAL stream is gone (deleted "
            "outside Engram, or lost); nothing was written",
            hint="Restore the stream from a backup, or delete the space and create it again.",
        ) from None
    raise Unavailable(
        503,
        "Write failed",
        f"could not write to space {space!r}: {failure!r}",
        hint="Check that NATS is up; retry with the same idempotency key.",
        retry_after=RETRY_AFTER,
    ) from None


#: JetStream's answer to a write past the stream's byte limit (discard new):
#: "maximum bytes exceeded"
WAL_FULL_CODES = frozenset({10077})


class _WalFull(Exception):
    pass


FULL = (_WalFull,)


async def _publish_one(
    js: JetStreamContext, space: str, message: tuple[CommandVerb, str, bytes], deadline: float
) -> int:
    verb, command_id, body = message
    loop = asyncio.get_running_loop()
    try:
        ack = await js.publish(
            command_subject(space, verb),
            body,
            headers={"Nats-Msg-Id": command_id},
            stream=wal_stream(space),
            timeout=max(deadline - loop.time(), 0.001),
        )
    except nats.js.errors.APIError as exc:
        if exc.err_code in WAL_FULL_CODES:
            raise _WalFull(exc.description) from exc
        raise
    return int(ack.seq)


def wal_full(space: str, stored: int) -> LimitReached:
    return LimitReached(
        409,
        "Space quota reached",
        f"JetStream refused the write: the WAL of memory space {space!r} is at its byte "
        f"limit (the space's max_bytes); {stored} message(s) of this write were stored",
        hint="Forget memories you no longer need (a forget still fits), or ask an admin for "
        "a space with a higher max_bytes.",
        slug="space-quota-reached",
    )


async def _publish_once(
    js: JetStreamContext,
    space: str,
    batch: list[tuple[CommandVerb, str, bytes]],
    deadline: float,
) -> tuple[list[int], BaseException | None]:
    """Publish ``batch`` pipelined; the seqs of the acknowledged prefix, and what
    stopped the rest (``None``: all acknowledged)."""
    stream = wal_stream(space)
    futures: list[asyncio.Future[Any]] = []
    failure: BaseException | None = None
    try:
        for verb, command_id, body in batch:
            futures.append(
                await js.publish_async(
                    command_subject(space, verb),
                    body,
                    headers={"Nats-Msg-Id": command_id},
                    stream=stream,
                )
            )
    except WRITE_FAILURES as exc:  # a failure part-way: the rest is not sent
        failure = exc
    # wait while acks keep coming (a busy server is slow, not lost); ACK_WAIT
    # seconds without one is a stall: give up on the rest, for a retry
    loop = asyncio.get_running_loop()
    pending = set(futures)
    while pending and failure is None and loop.time() < deadline:
        wait = min(ACK_WAIT, deadline - loop.time())
        done, pending = await asyncio.wait(pending, timeout=wait)
        if not done:
            break
    seqs: list[int] = []
    for f in futures:
        if not f.done():
            failure = failure or nats.errors.TimeoutError()
            break
        if f.cancelled() or f.exception() is not None:
            failure = failure or f.exception() or nats.errors.TimeoutError()
            break
        seqs.append(int(f.result().seq))
    for f in futures[len(seqs) :]:
        f.cancel()
    return seqs, failure


async def request(nc: Client, subject: str, payload: bytes, *, timeout: float) -> Msg:
    """A request, retried with backoff for about a second while nobody answers."""
    for delay in NO_RESPONDERS_BACKOFF:
        try:
            return await nc.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError:
            await asyncio.sleep(delay)
    return await nc.request(subject, payload, timeout=timeout)


def reply_error(data: bytes) -> EngramError | None:
    """The typed error of a worker's error reply (``{"error": {status, title,
    detail}}``), or ``None`` for an answer."""
    if not data.startswith(b'{"error"'):
        return None
    err = json.loads(data)["error"]
    return error_for(int(err["status"]), str(err["title"]), str(err["detail"]))


async def query(
    nc: Client,
    space: str,
    name: QueryName,
    body: Model | dict[str, Any] | bytes,
    *,
    timeout: float,
) -> bytes:
    """Request a query from the worker hosting ``space``; return its raw JSON
    answer. An error reply, no worker, a timeout or NATS being unreachable raise
    the matching :class:`EngramError`."""
    try:
        msg = await request(nc, query_subject(space, name), encode(body), timeout=timeout)
    except UNREACHABLE:
        raise Unavailable(
            503,
            "NATS unavailable",
            f"cannot reach NATS to ask about space {space!r}",
            hint="Retry shortly; check that NATS is up.",
            retry_after=RETRY_AFTER,
        ) from None
    except nats.errors.NoRespondersError:
        raise Unavailable(
            503,
            "No worker",
            f"no worker is serving space {space!r} right now",
            hint="Start a worker (engram worker) or retry shortly.",
            retry_after=RETRY_AFTER,
        ) from None
    except nats.errors.TimeoutError:
        raise Timeout(
            504,
            "Worker timeout",
            f"the worker for space {space!r} did not answer in {timeout:g}s",
            hint="Retry; if it persists, check the worker's logs.",
        ) from None
    data = bytes(msg.data)
    error = reply_error(data)
    if error is not None:
        raise error
    return data
