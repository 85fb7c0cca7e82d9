"""What every gRPC call goes through, as every HTTP request does: the key
(``authorization: Bearer`` metadata), its rate, the space (the request's
``memory_space_id``, else ``x-memory-space`` / ``engram-memory-space`` metadata,
else the default space while allowed), the key's scope and role, then the
method; an :class:`EngramError` becomes a status (code, the problem's detail,
the problem+json document in the trailing metadata ``engram-problem``), and
each call is counted by method and code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import DecodeError, Message
from pydantic import BaseModel, ValidationError

from engram_contract.errors import (
    EngramError,
    LimitReached,
    error_for,
    field_error,
    invalid_input,
)
from engram_contract.keys import Principal, Role
from engram_contract.settings import GatewaySettings
from engram_gateway.auth import Gatekeeper, admit, forbidden
from engram_gateway.bridge import NatsBridge
from engram_gateway.infra_errors import classify
from engram_gateway.metrics import GatewayMetrics
from engram_gateway.problems import problem_body
from engram_gateway.spaces import MISSING, SpaceResolver, checked_space
from engram_proto import SERVICE
from engram_proto.convert import FieldProblem, check

log = logging.getLogger(__name__)
B = TypeVar("B", bound=BaseModel)
R = TypeVar("R", bound=Message)

#: the metadata keys that name a request's space (first wins; both must agree)
SPACE_KEYS = ("x-memory-space", "engram-memory-space")
#: the trailing metadata key of a failed call's problem+json document
PROBLEM_KEY = "engram-problem"
HOW_TO_NAME = "set memory_space_id in the request or the x-memory-space metadata"
Metadata = list[tuple[str, str]]


def code_of(exc: EngramError) -> grpc.StatusCode:
    """The gRPC status of an error, following its HTTP status (docs/grpc.md)."""
    status = exc.status
    if status == 409:
        if isinstance(exc, LimitReached):
            return grpc.StatusCode.RESOURCE_EXHAUSTED  # a space limit or quota
        if exc.title == "Space conflict":
            return grpc.StatusCode.ALREADY_EXISTS
        return grpc.StatusCode.FAILED_PRECONDITION  # e.g. the space is being deleted
    return _CODES.get(status, grpc.StatusCode.UNKNOWN)


_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def problem_metadata(exc: EngramError, method: str) -> Metadata:
    """The trailing metadata of a failed call: the problem document (ASCII JSON,
    as HTTP's body) and ``retry-after`` when the error has one."""
    md = [(PROBLEM_KEY, json.dumps(problem_body(exc, method)))]
    if exc.retry_after is not None:
        md.append(("retry-after", str(max(0, math.ceil(exc.retry_after)))))
    return md


def validated(model: type[B], doc: dict[str, Any], prefix: str = "") -> B:
    """``doc`` as ``model``, or a 400 naming each offending field (under ``prefix``,
    the request field holding it: ``memory.content``)."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise invalid_input(
            exc, prefix, hint="Fix the named fields; see proto/engram/v1/service.proto."
        ) from None


@dataclass
class Api:
    """The gateway's state the gRPC methods use (the HTTP routes' too)."""

    settings: GatewaySettings
    bridge: NatsBridge
    gate: Gatekeeper
    spaces: SpaceResolver
    metrics: GatewayMetrics
    _counters: dict[tuple[str, str], Any] = field(default_factory=dict)
    _histograms: dict[str, Any] = field(default_factory=dict)

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        key = (method, code.name)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.grpc_requests.labels(*key)
        counter.inc()
        histogram = self._histograms.get(method)
        if histogram is None:
            histogram = self._histograms[method] = self.metrics.grpc_request_seconds.labels(method)
        histogram.observe(seconds)


@dataclass
class Call:
    """One call: who makes it, in which space, and what its answer's trailing
    metadata will carry."""

    api: Api
    context: grpc.aio.ServicerContext[Any, Any]
    method: str  # /engram.v1.MemoryService/Recall
    metadata: Mapping[str, str]
    principal: Principal
    space: str = ""
    trailing: Metadata = field(default_factory=list)

    @property
    def bridge(self) -> NatsBridge:
        return self.api.bridge

    def resolve_space(self, named: str | None) -> str:
        """The call's space: ``named`` (the request's ``memory_space_id``), else
        the metadata's, else (while allowed) the default space, marked deprecated."""
        given = [(k, self.metadata[k]) for k in SPACE_KEYS if k in self.metadata]
        if len({v for _, v in given}) > 1:
            (k1, v1), (k2, v2) = given
            raise _conflict(f"the {k1} metadata names {v1!r} but {k2} names {v2!r}")
        header = given[0] if given else None
        if named is not None:
            checked_space(named)
            if header is not None and header[1] != named:
                raise _conflict(
                    f"the {header[0]} metadata names {header[1]!r} but memory_space_id "
                    f"names {named!r}"
                )
            return named
        if header is not None:
            return checked_space(header[1])
        resolver = self.api.spaces
        if resolver.require_explicit:
            raise error_for(
                400,
                "Missing memory space",
                MISSING,
                slug="missing-space",
                hint=f"Name the space: {HOW_TO_NAME}.",
            )
        space = resolver.fallback(
            peer_host(self.context.peer() or ""),
            self.metadata.get("user-agent", ""),
            self.method,
            HOW_TO_NAME,
        )
        self.trailing += [
            ("deprecation", "true"),
            (
                "warning",
                f"299 - \"No memory space given: used the default space '{space}'. "
                f'Set memory_space_id or the x-memory-space metadata (CLI: --space)."',
            ),
        ]
        return space


def peer_host(peer: str) -> str:
    """The client's address without its port: ``ipv4:10.0.0.7:51234`` is
    ``10.0.0.7``, ``ipv6:[::1]:51234`` is ``[::1]`` (as HTTP's client host)."""
    _, _, address = peer.partition(":")
    host, sep, port = address.rpartition(":")
    return host if sep and port.isdigit() else address


def _conflict(detail: str) -> EngramError:
    return error_for(
        400,
        "Conflicting memory space",
        detail,
        slug="conflicting-space",
        hint="Name one space: drop the metadata or make it match memory_space_id.",
    )


async def fail(call: Call | None, context: Any, method: str, exc: EngramError) -> NoReturn:
    trailing = [] if call is None else call.trailing
    context.set_trailing_metadata(tuple(trailing + problem_metadata(exc, method)))
    await context.abort(code_of(exc), exc.detail)
    raise AssertionError("abort returned")  # pragma: no cover


def internal(exc: Exception, method: str) -> EngramError:
    known = classify(exc)  # the broker down or a JetStream limit: not a bug
    if known is not None:
        log.warning("gRPC %s: %s", method, known)
        return known
    log.exception("unhandled error in gRPC %s", method, exc_info=exc)
    return EngramError(
        500,
        "Internal error",
        f"{type(exc).__name__}: {exc}",
        hint="This is a bug in Engram; the request may be retried.",
    )


def parse(cls: type[R], raw: bytes) -> R:
    """The request message, or a 400 when the bytes are not one."""
    message = cls()
    try:
        message.ParseFromString(raw)
        check(message)
    except DecodeError as exc:
        raise error_for(
            400,
            "Malformed request",
            f"the request is not a valid {cls.DESCRIPTOR.full_name}: {exc}",
            hint="Send the message the method takes (proto/engram/v1/service.proto).",
        ) from None
    except FieldProblem as exc:
        raise field_error(
            exc.field,
            exc.message,
            hint="Send the fields of the message the method takes (proto/engram/v1/service.proto).",
        ) from None
    return message


@dataclass(frozen=True)
class Spec:
    """A method: its request class, the role it needs, whether it acts on a space
    (named by the request's ``memory_space_id`` or the metadata)."""

    request: type[Message]
    role: Role
    in_space: bool = True


async def open_call(
    api: Api,
    context: grpc.aio.ServicerContext[Any, Any],
    method: str,
    spec: Spec,
    request: Message,
) -> Call:
    """Authenticate, throttle, resolve the space and check the key covers it."""
    metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
    principal = api.gate.principal(metadata.get("authorization"))
    call = Call(api, context, method, metadata, principal)
    api.gate.throttle(principal)
    if api.bridge.liveness is not None:
        await api.bridge.liveness.usable()  # NATS gone a while: UNAVAILABLE now
    if not spec.in_space:
        if not principal.has(spec.role):
            raise forbidden(spec.role, None)
        return call
    named = request.memory_space_id if request.HasField("memory_space_id") else None  # type: ignore[attr-defined]
    # the space first: an invalid id is the same 400 for every key and role
    call.space = call.resolve_space(named)
    await admit(principal, spec.role, call.space, api.bridge)
    return call


def method_path(name: str) -> str:
    return f"/{SERVICE}/{name}"


class Guard:
    """What :func:`guarded` learns of its call."""

    call: Call | None = None


@contextlib.asynccontextmanager
async def guarded(
    api: Api, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> AsyncIterator[Guard]:
    """Run a call's body: an :class:`EngramError` (or a bug: INTERNAL) ends it with
    its status; the call is counted by method and code, and timed."""
    guard, started, code = Guard(), time.perf_counter(), grpc.StatusCode.OK
    try:
        yield guard
    except EngramError as exc:
        code = code_of(exc)
        await fail(guard.call, context, method, exc)
    except grpc.aio.AbortError:
        code = context.code() or grpc.StatusCode.UNKNOWN
        raise
    except Exception as exc:
        code = grpc.StatusCode.INTERNAL
        await fail(guard.call, context, method, internal(exc, method))
    except BaseException:  # cancelled: the client went away
        code = grpc.StatusCode.CANCELLED
        raise
    finally:
        api.observe(method, code, time.perf_counter() - started)


def _done(call: Call, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if call.trailing:
        context.set_trailing_metadata(tuple(call.trailing))


def unary(
    api: Api, name: str, spec: Spec, fn: Callable[[Call, Any], Awaitable[Message]]
) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]:
    """The handler of a unary method: raw bytes in (so a malformed request is
    INVALID_ARGUMENT, not grpcio's INTERNAL), serialized answer out."""
    method = method_path(name)

    async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        async with guarded(api, context, method) as guard:
            request = parse(spec.request, raw)
            guard.call = call = await open_call(api, context, method, spec, request)
            answer = await fn(call, request)
            _done(call, context)
            return answer.SerializeToString()
        raise AssertionError("unreachable")  # pragma: no cover

    return handle


def server_stream(
    api: Api, name: str, spec: Spec, fn: Callable[[Call, Any], AsyncIterator[Message]]
) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[bytes]]:
    """The handler of a server-streaming method (an error before the first item
    or after some ends the call with its status alike)."""
    method = method_path(name)

    async def handle(
        raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        async with guarded(api, context, method) as guard:
            request = parse(spec.request, raw)
            guard.call = call = await open_call(api, context, method, spec, request)
            async for item in fn(call, request):
                yield item.SerializeToString()
            _done(call, context)

    return handle


def client_stream(
    api: Api,
    name: str,
    spec: Spec,
    fn: Callable[[Call, Any, AsyncIterator[Any]], Awaitable[Message]],
) -> Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]:
    """The handler of a client-streaming method: the first message names the
    space and the options; ``fn`` gets it and the rest (parsed as they come)."""
    method = method_path(name)

    async def handle(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        async with guarded(api, context, method) as guard:
            first_raw = await anext(aiter(requests), None)
            first = parse(spec.request, first_raw or b"")
            guard.call = call = await open_call(api, context, method, spec, first)

            async def rest() -> AsyncIterator[Message]:
                async for raw in requests:
                    yield parse(spec.request, raw)

            answer = await fn(call, first if first_raw is not None else None, rest())
            _done(call, context)
            return answer.SerializeToString()
        raise AssertionError("unreachable")  # pragma: no cover

    return handle
