"""The unary methods of ``engram.v1.MemoryService``: each translates its request
into the contract's models (validated as the HTTP bodies are), calls the code
the HTTP route calls, and translates the answer (the worker's JSON, as HTTP
forwards it) into the response message."""

from __future__ import annotations

from typing import Any

import msgspec

from engram_contract.errors import field_error
from engram_contract.ids import MEMORY_ID_EXPECTED, MEMORY_ID_RE
from engram_contract.messages import (
    ConsolidateRequest,
    CreateSpace,
    ForgetBatch,
    LinkIn,
    ListRequest,
    MemoryBatch,
    MemoryIn,
    RecallWire,
)
from engram_gateway.auth import audit_line
from engram_gateway.grpc_api.calls import Call, Spec, validated
from engram_gateway.routes.recall import parse_query_body
from engram_gateway.spaces import checked_space
from engram_proto.convert import to_doc, to_message
from engram_proto.v1 import queries_pb2 as q
from engram_proto.v1 import service_pb2 as s
from engram_proto.v1 import spaces_pb2

#: the worker's JSON answers (msgspec: ~3x json.loads on a recall's)
decode = msgspec.json.Decoder().decode
encode = msgspec.json.Encoder().encode
#: idempotency keys of writes, as HTTP's Idempotency-Key header
MAX_KEY = 128


def _key(request: Any) -> str | None:
    if not request.HasField("idempotency_key"):
        return None
    key: str = request.idempotency_key
    if not 1 <= len(key) <= MAX_KEY:
        raise field_error("idempotency_key", f"must be 1-{MAX_KEY} characters")
    return key


def _doc(request: Any, *drop: str) -> dict[str, Any]:
    doc = to_doc(request)
    for name in ("memory_space_id", *drop):
        doc.pop(name, None)
    return doc


# -- spaces -------------------------------------------------------------------


async def create_space(call: Call, request: s.CreateSpaceRequest) -> s.CreateSpaceResponse:
    body = validated(CreateSpace, to_doc(request.space), "space")
    checked_space(body.id)
    rec, created = await call.bridge.create_space(body)
    if created:
        audit_line(call.principal, "space.create", space=rec.id)
    record = to_message(spaces_pb2.SpaceRecord, rec.model_dump(mode="json"))
    return s.CreateSpaceResponse(space=record, created=created)


async def list_spaces(call: Call, request: s.ListSpacesRequest) -> s.ListSpacesResponse:
    recs = call.bridge.registry.cached_all()
    return s.ListSpacesResponse(
        spaces=[
            to_message(spaces_pb2.SpaceRecord, r.model_dump(mode="json"))
            for r in recs
            if r.status == "active" and call.principal.may("read", r.id)
        ]
    )


async def get_space(call: Call, request: s.GetSpaceRequest) -> s.GetSpaceResponse:
    rec = await call.bridge.spaces.for_read(call.space)
    stats = decode(await call.bridge.stats(call.space))
    return s.GetSpaceResponse(
        space=to_message(spaces_pb2.SpaceRecord, rec.model_dump(mode="json")),
        memories=stats["memories"],
        applied_seq=stats["applied_seq"],
    )


async def delete_space(call: Call, request: s.DeleteSpaceRequest) -> s.DeleteSpaceResponse:
    await call.bridge.delete_space(call.space)
    audit_line(call.principal, "space.delete", space=call.space)
    return s.DeleteSpaceResponse(id=call.space, status="deleted")


# -- writes -------------------------------------------------------------------


async def remember(call: Call, request: s.RememberRequest) -> s.RememberResponse:
    memory = validated(MemoryIn, to_doc(request.memory), "memory")
    key = _key(request)
    ids, seq = await call.bridge.remember(call.space, [memory], idempotency_key=key)
    return s.RememberResponse(ids=ids, seq=seq)


async def remember_batch(call: Call, request: s.RememberBatchRequest) -> s.RememberResponse:
    batch = validated(MemoryBatch, {"memories": [], **_doc(request, "idempotency_key")})
    key = _key(request)
    ids, seq = await call.bridge.remember(
        call.space, batch.memories, prefix="memories", idempotency_key=key
    )
    return s.RememberResponse(ids=ids, seq=seq)


async def forget(call: Call, request: s.ForgetRequest) -> s.ForgetResponse:
    memory_id = request.memory_id
    if not MEMORY_ID_RE.fullmatch(memory_id):
        raise field_error("memory_id", f"{memory_id!r} is invalid: {MEMORY_ID_EXPECTED}")
    seq = await call.bridge.forget(call.space, memory_id, _key(request))
    return s.ForgetResponse(seq=seq)


async def forget_many(call: Call, request: s.ForgetManyRequest) -> s.ForgetManyResponse:
    body = validated(ForgetBatch, {"ids": [], **_doc(request, "idempotency_key")})
    seq = await call.bridge.forget_many(call.space, body.ids, _key(request))
    return s.ForgetManyResponse(seq=seq, count=len(body.ids))


async def link(call: Call, request: s.LinkRequest) -> s.LinkResponse:
    body = validated(LinkIn, to_doc(request.link), "link")
    seq = await call.bridge.link(call.space, body, _key(request))
    return s.LinkResponse(seq=seq)


# -- reads --------------------------------------------------------------------


async def get_memory(call: Call, request: s.GetMemoryRequest) -> q.GetResponse:
    raw = await call.bridge.get(call.space, request.memory_id, request.include_embedding)
    return to_message(q.GetResponse, decode(raw))


async def list_memories(call: Call, request: s.ListMemoriesRequest) -> q.ListResponse:
    body = validated(ListRequest, _doc(request))
    return to_message(q.ListResponse, decode(await call.bridge.list(call.space, body)))


async def recall(call: Call, request: q.RecallRequest) -> q.RecallResponse:
    # validated as HTTP's body is (the same msgspec struct, the same errors), and
    # forwarded as validated
    body = encode(_doc(request))
    wire = parse_query_body(RecallWire, body)
    if wire.min_seq is not None and wire.consistency != "eventual":  # as the HTTP route
        await call.bridge.check_min_seq(call.space, wire.min_seq)
    return to_message(q.RecallResponse, decode(await call.bridge.recall(call.space, wire, body)))


async def consolidate(call: Call, request: q.ConsolidateRequest) -> q.ConsolidateResponse:
    body = validated(ConsolidateRequest, _doc(request))
    raw = await call.bridge.consolidate(call.space, body)
    return to_message(q.ConsolidateResponse, decode(raw))


#: method name → (its spec, its function)
UNARY: dict[str, tuple[Spec, Any]] = {
    "CreateSpace": (Spec(s.CreateSpaceRequest, "admin", in_space=False), create_space),
    "ListSpaces": (Spec(s.ListSpacesRequest, "read", in_space=False), list_spaces),
    "GetSpace": (Spec(s.GetSpaceRequest, "read"), get_space),
    "DeleteSpace": (Spec(s.DeleteSpaceRequest, "admin"), delete_space),
    "Remember": (Spec(s.RememberRequest, "write"), remember),
    "RememberBatch": (Spec(s.RememberBatchRequest, "write"), remember_batch),
    "Forget": (Spec(s.ForgetRequest, "write"), forget),
    "ForgetMany": (Spec(s.ForgetManyRequest, "write"), forget_many),
    "Link": (Spec(s.LinkRequest, "write"), link),
    "GetMemory": (Spec(s.GetMemoryRequest, "read"), get_memory),
    "ListMemories": (Spec(s.ListMemoriesRequest, "read"), list_memories),
    "Recall": (Spec(q.RecallRequest, "read"), recall),
    "Consolidate": (Spec(q.ConsolidateRequest, "write"), consolidate),
}
