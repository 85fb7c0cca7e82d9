"""The SDK over the gateway's gRPC API (``engram.v1.MemoryService``, grpcio's
asyncio channel and the stubs of :mod:`engram_proto`).

Requests are the contract's models turned into messages, answers the messages
turned back into models (:mod:`engram_proto.convert`); a failed call carries the
problem document in its trailing metadata (``engram-problem``), which becomes
the same exception HTTP's problem+json does."""

from __future__ import annotations

import builtins
import json
import os
import types
from collections.abc import AsyncIterator
from typing import Any, TypeVar, Union, get_args, get_origin

import grpc
import grpc.aio
from pydantic import BaseModel

from engram_client.base import (
    EVENT_MODELS,
    Event,
    EventData,
    EventStream,
    SpaceInfo,
    Written,
)
from engram_client.errors import EngramError, Timeout, Unavailable, error_for
from engram_contract.messages import (
    CreateSpace,
    GetResponse,
    LinkIn,
    ListRequest,
    ListResponse,
    Memory,
    MemoryIn,
    RecallRequest,
    RecallResponse,
    SpaceRecord,
)
from engram_proto.convert import to_doc, to_message
from engram_proto.v1 import memory_pb2, queries_pb2, service_pb2, service_pb2_grpc, spaces_pb2

M = TypeVar("M", bound=BaseModel)
PROBLEM_KEY = "engram-problem"
#: the HTTP status of a gRPC code, for a failure the gateway did not describe
#: (the channel's own: unreachable, deadline)
_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def _nulls(model: type[BaseModel], doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with what each field the model requires is when the message leaves
    it out: ``[]`` or ``{}`` (an empty repeated field or map), else ``None`` (an
    unset message or optional field is null), in nested models too."""
    for name, info in model.model_fields.items():
        value = doc.get(name)
        if value is None:
            if name not in doc and info.is_required():
                origin = get_origin(info.annotation)
                doc[name] = [] if origin is list else {} if origin is dict else None
            continue
        inner = _model_in(info.annotation)
        if inner is None:
            continue
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _nulls(inner, item)
        elif isinstance(value, dict):
            _nulls(inner, value)
    return doc


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (alone, in a list, or nullable), if any."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, list):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def as_model(model: type[M], message: Any) -> M:
    """A message as the contract's model."""
    return model.model_validate(_nulls(model, to_doc(message)))


def key_metadata(api_key: str | None = None) -> tuple[tuple[str, str], ...]:
    key = api_key if api_key is not None else os.environ.get("ENGRAM_API_KEY")
    return (("authorization", f"Bearer {key}"),) if key else ()


class GrpcTransport:
    """Talks to a gateway's gRPC API at ``target`` (``host:port``): the gateway
    validates, embeds, publishes (answering once JetStream acknowledged) and
    forwards queries, as over HTTP."""

    def __init__(self, target: str, *, timeout: float = 30.0, api_key: str | None = None) -> None:
        self.target = target.removeprefix("grpc://")
        self.timeout = timeout
        self.metadata = key_metadata(api_key)
        self._channel: grpc.aio.Channel | None = None
        self._stub: service_pb2_grpc.MemoryServiceStub | None = None

    @property
    def stub(self) -> service_pb2_grpc.MemoryServiceStub:
        if self._stub is None:
            raise RuntimeError("the client is not open: use `async with EngramClient.grpc(...)`")
        return self._stub

    async def open(self) -> None:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.target,
                options=[
                    ("grpc.primary_user_agent", "engram-sdk"),
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.max_send_message_length", -1),
                ],
            )
            self._stub = service_pb2_grpc.MemoryServiceStub(self._channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    def error(self, exc: grpc.aio.AioRpcError) -> EngramError:
        """The SDK error of a failed call."""
        return rpc_error(
            exc.code(), exc.details(), exc.trailing_metadata(), self.target, self.timeout
        )

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self.stub, method)(
                request, timeout=self.timeout, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise self.error(exc) from None

    # -- spaces ------------------------------------------------------------

    async def create_space(self, body: CreateSpace) -> SpaceRecord:
        doc = body.model_dump(mode="json", exclude_unset=True)
        doc["id"] = body.id
        request = service_pb2.CreateSpaceRequest(space=to_message(spaces_pb2.CreateSpace, doc))
        answer = await self._call("CreateSpace", request)
        return as_model(SpaceRecord, answer.space)

    async def spaces(self) -> builtins.list[SpaceRecord]:
        answer = await self._call("ListSpaces", service_pb2.ListSpacesRequest())
        return [as_model(SpaceRecord, r) for r in answer.spaces]

    async def get_space(self, space: str) -> SpaceInfo:
        answer = await self._call("GetSpace", service_pb2.GetSpaceRequest(memory_space_id=space))
        return SpaceInfo(
            as_model(SpaceRecord, answer.space), int(answer.memories), int(answer.applied_seq)
        )

    async def delete_space(self, space: str) -> None:
        await self._call("DeleteSpace", service_pb2.DeleteSpaceRequest(memory_space_id=space))

    # -- writes --------------------------------------------------------------

    async def remember(
        self, space: str, memories: builtins.list[MemoryIn], idempotency_key: str | None
    ) -> Written:
        request = service_pb2.RememberBatchRequest(
            memory_space_id=space,
            memories=[
                to_message(memory_pb2.MemoryIn, m.model_dump(mode="json", exclude_none=True))
                for m in memories
            ],
            idempotency_key=idempotency_key,
        )
        answer = await self._call("RememberBatch", request)
        return Written(ids=list(answer.ids), seq=int(answer.seq))

    async def forget(self, space: str, memory_id: str) -> int:
        request = service_pb2.ForgetRequest(memory_space_id=space, memory_id=memory_id)
        return int((await self._call("Forget", request)).seq)

    async def forget_many(
        self, space: str, memory_ids: builtins.list[str], idempotency_key: str | None
    ) -> int:
        request = service_pb2.ForgetManyRequest(
            memory_space_id=space, ids=memory_ids, idempotency_key=idempotency_key
        )
        return int((await self._call("ForgetMany", request)).seq)

    async def link(self, space: str, body: LinkIn) -> int:
        request = service_pb2.LinkRequest(
            memory_space_id=space,
            link=to_message(memory_pb2.LinkIn, body.model_dump(mode="json")),
        )
        return int((await self._call("Link", request)).seq)

    # -- reads ---------------------------------------------------------------

    async def recall(self, space: str, request: RecallRequest) -> RecallResponse:
        doc = request.model_dump(mode="json", exclude_none=True)
        doc["memory_space_id"] = space
        answer = await self._call("Recall", to_message(queries_pb2.RecallRequest, doc))
        return as_model(RecallResponse, answer)

    async def get(self, space: str, memory_id: str, include_embedding: bool) -> Memory:
        request = service_pb2.GetMemoryRequest(
            memory_space_id=space, memory_id=memory_id, include_embedding=include_embedding
        )
        return as_model(GetResponse, await self._call("GetMemory", request)).memory

    async def list(self, space: str, request: ListRequest) -> ListResponse:
        message = service_pb2.ListMemoriesRequest(
            memory_space_id=space,
            limit=request.limit,
            cursor=request.cursor,
            include_embedding=request.include_embedding,
        )
        return as_model(ListResponse, await self._call("ListMemories", message))

    def events(
        self, space: str, kinds: builtins.list[str], last_event_id: int | None
    ) -> EventStream:
        return GrpcEventStream(self, space, kinds, last_event_id)


def rpc_error(
    code: grpc.StatusCode, details: str | None, trailing: Any, target: str, timeout: float
) -> EngramError:
    """A failed call as the SDK's error: the gateway's problem document when it
    sent one, else what the channel says (unreachable, deadline)."""
    metadata = {k: v for k, v in trailing or () if isinstance(v, str)}
    problem = metadata.get(PROBLEM_KEY)
    if problem is not None:
        doc = json.loads(problem)
        retry = metadata.get("retry-after")
        return error_for(
            int(doc.get("status", 500)),
            str(doc.get("title", "")),
            str(doc.get("detail", details or "")),
            hint=doc.get("hint"),
            errors=doc.get("errors"),
            retry_after=float(retry) if retry is not None else None,
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Timeout(
            504, "Gateway timeout", f"the gateway at {target} did not answer in {timeout:g} s"
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(
            503, "Gateway unreachable", f"cannot reach the gateway at {target}: {details}"
        )
    return error_for(_STATUS.get(code, 500), code.name, details or code.name)


class GrpcEventStream(EventStream):
    """``StreamEvents`` of one space. The gateway sends the call's headers once its
    consumer is open, so once :meth:`open` returns every later event arrives;
    closing cancels the call, which frees that consumer."""

    def __init__(
        self, transport: GrpcTransport, space: str, kinds: list[str], after: int | None
    ) -> None:
        self._transport = transport
        self._request = service_pb2.StreamEventsRequest(
            memory_space_id=space, types=kinds, last_event_id=after
        )
        self._call: Any = None
        self._items: AsyncIterator[Any] | None = None

    async def _open(self) -> None:
        t = self._transport
        self._call = t.stub.StreamEvents(self._request, metadata=t.metadata)
        try:
            await self._call.initial_metadata()
            if self._call.done():  # refused: no headers, only the status
                code = await self._call.code()
                if code != grpc.StatusCode.OK:
                    details = await self._call.details()
                    trailing = await self._call.trailing_metadata()
                    raise rpc_error(code, details, trailing, t.target, t.timeout)
        except grpc.aio.AioRpcError as exc:
            raise t.error(exc) from None
        self._items = aiter(self._call)

    async def _next(self) -> Event:
        assert self._items is not None
        try:
            async for item in self._items:
                kind = item.WhichOneof("data")
                model = EVENT_MODELS.get(kind or "")
                if model is None:
                    continue
                data: EventData = as_model(model, getattr(item, kind))  # type: ignore[assignment]
                return Event(int(item.id), item.kind, data)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                raise StopAsyncIteration from None
            raise self._transport.error(exc) from None
        raise StopAsyncIteration  # the gateway ended the stream

    async def _close(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
