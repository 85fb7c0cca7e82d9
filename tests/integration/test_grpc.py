"""The gateway's gRPC API end to end: real gateways (in this event loop) serving
gRPC on free ports, a worker and the session's nats-server, shared by the
module's tests; clients are the project's stubs (engram_proto), a reflection
client, and stubs generated here from the .proto files alone.

What a user notices: every method does what its HTTP route does, a space is
named three ways (field, metadata, default while allowed), mistakes are
INVALID_ARGUMENT naming the field, keys are checked as over HTTP, events stream
in order and resume, an export imports elsewhere."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engram_contract.errors import EngramError, LimitReached, error_for
from engram_gateway.grpc_api.calls import code_of
from engram_gateway.spaces import MISSING
from engram_proto.generate import PROTO_DIR
from engram_proto.v1 import memory_pb2 as m
from engram_proto.v1 import queries_pb2 as q
from engram_proto.v1 import service_pb2 as s
from engram_proto.v1 import service_pb2_grpc, spaces_pb2
from engram_worker.worker import Worker
from tests.helpers import (
    NatsServer,
    basis,
    free_port,
    gateway_settings,
    purge_heartbeats,
    running_gateway,
    worker_settings,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

DIM = 16
ADMIN_KEY = "grpc-admin-key-" + "x" * 24
Stub = service_pb2_grpc.MemoryServiceStub


@dataclass
class Gateway:
    port: int
    http: httpx.AsyncClient
    channel: grpc.aio.Channel
    stub: Stub


@dataclass
class Stack:
    #: keys off (loopback), an explicit space required
    open: Gateway
    #: keys required, the default space used when a request names none
    keys: Gateway


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(nats_server: NatsServer) -> AsyncIterator[Stack]:
    worker = Worker(worker_settings(nats_server.url))
    await worker.start()
    ports = free_port(), free_port()
    try:
        async with (
            running_gateway(gateway_settings(nats_server.url, grpc_port=ports[0])) as http1,
            running_gateway(
                gateway_settings(
                    nats_server.url,
                    grpc_port=ports[1],
                    auth="required",
                    admin_key=ADMIN_KEY,
                    require_explicit_space=False,
                )
            ) as http2,
            grpc.aio.insecure_channel(f"127.0.0.1:{ports[0]}") as c1,
            grpc.aio.insecure_channel(f"127.0.0.1:{ports[1]}") as c2,
        ):
            yield Stack(
                Gateway(ports[0], http1, c1, Stub(c1)),
                Gateway(ports[1], http2, c2, Stub(c2)),
            )
    finally:
        await worker.stop()
        await purge_heartbeats(nats_server.url, [worker.settings.worker_id])


def sid() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def problem(err: grpc.aio.AioRpcError) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dict(err.trailing_metadata() or ())["engram-problem"])
    return doc


def memory(content: str, id: str, vector: list[float], **more: Any) -> m.MemoryIn:
    return m.MemoryIn(content=content, id=id, embedding=vector, **more)


async def new_space(stub: Stub, **meta: Any) -> str:
    space = sid()
    await stub.CreateSpace(
        s.CreateSpaceRequest(space=spaces_pb2.CreateSpace(id=space, dim=DIM)), **meta
    )
    return space


# -- every method ---------------------------------------------------------------


async def test_every_unary_method_does_what_http_does(stack: Stack) -> None:
    stub = stack.open.stub
    space = sid()
    made = await stub.CreateSpace(
        s.CreateSpaceRequest(space=spaces_pb2.CreateSpace(id=space, dim=DIM))
    )
    assert (made.created, made.space.id, made.space.dim) == (True, space, DIM)
    assert made.space.status == "active" and made.space.links.semantic_k == 5
    again = await stub.CreateSpace(
        s.CreateSpaceRequest(space=spaces_pb2.CreateSpace(id=space, dim=DIM))
    )
    assert again.created is False
    other = await refused(
        stub.CreateSpace(s.CreateSpaceRequest(space=spaces_pb2.CreateSpace(id=space, dim=32)))
    )
    assert other.code() == grpc.StatusCode.ALREADY_EXISTS, other.details()
    assert space in {r.id for r in (await stub.ListSpaces(s.ListSpacesRequest())).spaces}

    one = await stub.Remember(
        s.RememberRequest(
            memory_space_id=space,
            memory=memory("the cat is named Tom", "cat", basis(0), tags=["pets"]),
        )
    )
    assert list(one.ids) == ["cat"] and one.seq >= 1
    batch = await stub.RememberBatch(
        s.RememberBatchRequest(
            memory_space_id=space,
            memories=[
                memory("the dog is named Rex", "dog", basis(1), tags=["pets"]),
                memory("the deploy key is in vault", "key", basis(2)),
            ],
            idempotency_key="batch-1",
        )
    )
    assert list(batch.ids) == ["dog", "key"] and batch.seq > one.seq

    got = await stub.GetMemory(
        s.GetMemoryRequest(memory_space_id=space, memory_id="cat", include_embedding=True)
    )
    assert got.memory.content == "the cat is named Tom" and list(got.memory.tags) == ["pets"]
    assert list(got.memory.embedding) == basis(0) and got.memory.created_at.seconds > 0
    page = await stub.ListMemories(s.ListMemoriesRequest(memory_space_id=space, limit=2))
    assert [x.id for x in page.memories] == ["cat", "dog"] and page.HasField("next_cursor")
    rest = await stub.ListMemories(
        s.ListMemoriesRequest(memory_space_id=space, cursor=page.next_cursor)
    )
    assert [x.id for x in rest.memories] == ["key"] and not rest.HasField("next_cursor")

    linked = await stub.Link(
        s.LinkRequest(memory_space_id=space, link=m.LinkIn(source="cat", target="key", weight=0.9))
    )
    assert linked.seq > batch.seq
    similar = await stub.Recall(
        q.RecallRequest(memory_space_id=space, embedding=basis(0), k=1, mode="similarity")
    )
    assert [r.memory.id for r in similar.results] == ["cat"] and similar.space == space
    # spreading: the link carries activation from the cat to the key, with its trace
    spread = await stub.Recall(
        q.RecallRequest(
            memory_space_id=space, embedding=basis(0), k=3, seed_k=1, trace=True, reinforce=False
        )
    )
    by_id = {r.memory.id: r for r in spread.results}
    assert spread.results[0].memory.id == "cat" and "key" in by_id
    assert by_id["key"].hops == 1 and [t.memory_id for t in by_id["key"].trace] == ["cat", "key"]
    assert by_id["key"].trace[1].weight == pytest.approx(0.9)
    hybrid = await stub.Recall(
        q.RecallRequest(memory_space_id=space, query="dog", k=2, mode="hybrid", tags=["pets"])
    )
    assert {r.memory.id for r in hybrid.results} <= {"cat", "dog"}

    info = await stub.GetSpace(s.GetSpaceRequest(memory_space_id=space))
    assert (info.space.id, info.memories) == (space, 3) and info.applied_seq >= linked.seq
    dry = await stub.Consolidate(q.ConsolidateRequest(memory_space_id=space, dry_run=True))
    assert dry.space == space and not dry.HasField("seq")

    forgot = await stub.Forget(s.ForgetRequest(memory_space_id=space, memory_id="cat"))
    assert forgot.seq > linked.seq
    gone = await refused(stub.GetMemory(s.GetMemoryRequest(memory_space_id=space, memory_id="cat")))
    assert gone.code() == grpc.StatusCode.NOT_FOUND and "cat" in gone.details()
    many = await stub.ForgetMany(s.ForgetManyRequest(memory_space_id=space, ids=["dog", "key"]))
    assert many.count == 2 and many.seq > forgot.seq
    left = await stub.ListMemories(s.ListMemoriesRequest(memory_space_id=space))
    assert list(left.memories) == []

    deleted = await stub.DeleteSpace(s.DeleteSpaceRequest(memory_space_id=space))
    assert (deleted.id, deleted.status) == (space, "deleted")
    missing = await refused(stub.GetSpace(s.GetSpaceRequest(memory_space_id=space)))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert missing.details() == f"memory space {space!r} does not exist"


# -- naming the space -------------------------------------------------------------


async def test_a_space_is_named_by_field_or_metadata(stack: Stack) -> None:
    stub = stack.open.stub
    space = await new_space(stub)
    await stub.Remember(s.RememberRequest(memory_space_id=space, memory=memory("a", "a", basis(0))))
    for key in ("x-memory-space", "engram-memory-space"):
        page = await stub.ListMemories(s.ListMemoriesRequest(), metadata=((key, space),))
        assert [x.id for x in page.memories] == ["a"], key
    # the field and the metadata agreeing is fine; disagreeing is refused
    same = await stub.ListMemories(
        s.ListMemoriesRequest(memory_space_id=space), metadata=(("x-memory-space", space),)
    )
    assert len(same.memories) == 1
    clash = await refused(
        stub.ListMemories(
            s.ListMemoriesRequest(memory_space_id=space), metadata=(("x-memory-space", "other"),)
        )
    )
    assert clash.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'other'" in clash.details() and repr(space) in clash.details()
    assert problem(clash)["title"] == "Conflicting memory space"
    both = await refused(
        stub.ListMemories(
            s.ListMemoriesRequest(),
            metadata=(("x-memory-space", space), ("engram-memory-space", "other")),
        )
    )
    assert both.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_request_naming_no_space_is_refused_with_the_message(stack: Stack) -> None:
    err = await refused(stack.open.stub.Recall(q.RecallRequest(query="anything")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        err.details()
        == MISSING
        == ("Missing memory_space_id. Set --space or X-Memory-Space header.")
    )
    bad = await refused(stack.open.stub.Recall(q.RecallRequest(memory_space_id="No Such!")))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem(bad)["title"] == "Invalid space id"


async def test_without_a_space_the_default_one_is_used_while_allowed(stack: Stack) -> None:
    admin = (("authorization", f"Bearer {ADMIN_KEY}"),)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def fallbacks() -> float:
        text = (await stack.keys.http.get("/metrics", headers=headers)).text
        (line,) = [
            x
            for x in text.splitlines()
            if x.startswith("engram_memory_space_default_fallback_total ")
        ]
        return float(line.split()[-1])

    before = await fallbacks()
    call = stack.keys.stub.ListMemories(s.ListMemoriesRequest(limit=1), metadata=admin)
    page = await call
    assert page.space == "default"
    trailing = dict(await call.trailing_metadata())
    assert trailing["deprecation"] == "true"
    assert "used the default space 'default'" in trailing["warning"]
    assert await fallbacks() == before + 1


# -- invalid input ----------------------------------------------------------------


async def test_wrong_types_and_out_of_range_values_name_the_field(stack: Stack) -> None:
    stub = stack.open.stub
    space = await new_space(stub)

    async def field_of(call: Any) -> str:
        err = await refused(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
        fields = [e["field"] for e in problem(err)["errors"]]
        assert fields and err.details().startswith(fields[0]), (fields, err.details())
        return str(fields[0])

    recall = stub.Recall
    assert await field_of(recall(q.RecallRequest(memory_space_id=space, query="x", k=0))) == "k"
    assert await field_of(recall(q.RecallRequest(memory_space_id=space, query="x", mode="b"))) == (
        "mode"
    )
    assert await field_of(recall(q.RecallRequest(memory_space_id=space, embedding=[1.0, 0.0]))) == (
        "embedding"
    )
    too_late = q.RecallRequest(memory_space_id=space, query="x")
    too_late.since.seconds = 10**13
    assert await field_of(recall(too_late)) == "since"
    assert await field_of(
        stub.Remember(
            s.RememberRequest(memory_space_id=space, memory=m.MemoryIn(content="x", confidence=2.0))
        )
    ) == ("memory.confidence")
    assert await field_of(
        stub.Remember(s.RememberRequest(memory_space_id=space, memory=m.MemoryIn()))
    ) == ("memory.content")
    assert await field_of(
        stub.Link(
            s.LinkRequest(memory_space_id=space, link=m.LinkIn(source="a", target="b", weight=1.5))
        )
    ) == ("link.weight")
    assert await field_of(
        stub.ListMemories(s.ListMemoriesRequest(memory_space_id=space, limit=5000))
    ) == ("limit")
    assert await field_of(stub.RememberBatch(s.RememberBatchRequest(memory_space_id=space))) == (
        "memories"
    )

    # a field sent with another type than its own (`k` as a string): protobuf
    # parses it as an unknown field; the gateway names it
    call = stack.open.channel.unary_unary("/engram.v1.MemoryService/Recall")
    wrong = q.RecallRequest(memory_space_id=space, query="x").SerializeToString()
    wrong += bytes([0x1A, 3]) + b"ten"  # field 3 (k, int32) as length-delimited
    err = await refused(call(wrong))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "k: expected int32, got a length-delimited value"
    garbage = await refused(call(b"\xff\xff\xff"))
    assert garbage.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "engram.v1.RecallRequest" in garbage.details()


async def test_error_statuses_follow_http() -> None:
    codes = {
        400: grpc.StatusCode.INVALID_ARGUMENT,
        401: grpc.StatusCode.UNAUTHENTICATED,
        403: grpc.StatusCode.PERMISSION_DENIED,
        404: grpc.StatusCode.NOT_FOUND,
        413: grpc.StatusCode.RESOURCE_EXHAUSTED,
        429: grpc.StatusCode.RESOURCE_EXHAUSTED,
        503: grpc.StatusCode.UNAVAILABLE,
        504: grpc.StatusCode.DEADLINE_EXCEEDED,
    }
    for status, code in codes.items():
        assert code_of(error_for(status, "t", "d")) == code, status
    assert code_of(error_for(409, "Space conflict", "d")) == grpc.StatusCode.ALREADY_EXISTS
    assert code_of(error_for(409, "Space not writable", "d")) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    quota = LimitReached(409, "Space quota reached", "d")
    assert code_of(quota) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert code_of(EngramError(500, "Internal error", "d")) == grpc.StatusCode.INTERNAL


# -- keys -------------------------------------------------------------------------


async def test_keys_are_checked_as_over_http(stack: Stack) -> None:
    stub, http = stack.keys.stub, stack.keys.http
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    alpha, beta, ghost = sid(), sid(), sid()
    for space in (alpha, beta):
        r = await http.post("/api/v1/spaces", json={"id": space, "dim": DIM}, headers=admin)
        assert r.status_code == 201, r.text
    keys = {}
    for role in ("read", "write"):
        r = await http.post("/api/v1/keys", json={"spaces": [alpha], "role": role}, headers=admin)
        keys[role] = (("authorization", f"Bearer {r.json()['key']}"),)

    def recall(space: str) -> q.RecallRequest:
        return q.RecallRequest(memory_space_id=space, embedding=basis(0), k=1)

    nobody = await refused(stub.Recall(recall(alpha)))
    assert nobody.code() == grpc.StatusCode.UNAUTHENTICATED
    assert nobody.details() == "this request needs an API key"
    wrong = await refused(stub.Recall(recall(alpha), metadata=(("authorization", "Bearer no"),)))
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED

    write = s.RememberRequest(memory_space_id=alpha, memory=memory("a", "a", basis(0)))
    reader = await refused(stub.Remember(write, metadata=keys["read"]))
    assert reader.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reader.details() == f"this API key may not write to memory space {alpha!r}"
    written = await stub.Remember(write, metadata=keys["write"])
    found = await stub.Recall(recall(alpha), metadata=keys["read"])
    assert [r.memory.id for r in found.results] == list(written.ids)
    # another space: the same answer whether it exists or not
    answers = []
    for space in (beta, ghost):
        err = await refused(stub.Recall(recall(space), metadata=keys["read"]))
        answers.append((err.code(), err.details().replace(space, "S")))
    assert (
        answers[0]
        == answers[1]
        == (
            grpc.StatusCode.PERMISSION_DENIED,
            "this API key may not read memory space 'S'",
        )
    )
    mine = await stub.ListSpaces(s.ListSpacesRequest(), metadata=keys["write"])
    assert [r.id for r in mine.spaces] == [alpha]
    create = await refused(
        stub.CreateSpace(
            s.CreateSpaceRequest(space=spaces_pb2.CreateSpace(id=sid())), metadata=keys["write"]
        )
    )
    assert create.code() == grpc.StatusCode.PERMISSION_DENIED


# -- streams ----------------------------------------------------------------------


async def test_events_stream_in_order_and_resume(stack: Stack) -> None:
    stub = stack.open.stub
    space = await new_space(stub)
    request = s.StreamEventsRequest(memory_space_id=space, types=["stored"])
    events = stub.StreamEvents(request)
    await events.initial_metadata()  # the gateway's consumer is open
    for i in range(3):
        await stub.Remember(
            s.RememberRequest(memory_space_id=space, memory=memory(f"m{i}", f"m{i}", basis(i)))
        )
    seen = []
    async for event in events:
        assert event.kind == "stored" and event.stored.space == space
        seen.append(event)
        if len(seen) == 3:
            break
    events.cancel()
    assert [e.stored.memory_id for e in seen] == ["m0", "m1", "m2"]
    assert [e.id for e in seen] == sorted(e.id for e in seen)
    resumed = stub.StreamEvents(
        s.StreamEventsRequest(memory_space_id=space, types=["stored"], last_event_id=seen[0].id)
    )
    again = [await asyncio.wait_for(anext(aiter(resumed)), 10) for _ in range(2)]
    resumed.cancel()
    assert [e.stored.memory_id for e in again] == ["m1", "m2"]
    assert [e.id for e in again] == [e.id for e in seen[1:]]

    unknown = await refused(
        stub.StreamEvents(s.StreamEventsRequest(memory_space_id=space, types=["nope"])).read()
    )
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT and "'nope'" in unknown.details()


async def test_export_then_import_round_trip(stack: Stack) -> None:
    stub = stack.open.stub
    source, target = await new_space(stub), sid()
    await stub.RememberBatch(
        s.RememberBatchRequest(
            memory_space_id=source,
            memories=[
                memory("one", "one", basis(0), tags=["t"], metadata={"k": "v"}),
                memory("two", "two", basis(1), confidence=0.4),
                memory("three", "three", basis(2)),
            ],
        )
    )
    await stub.Link(
        s.LinkRequest(memory_space_id=source, link=m.LinkIn(source="one", target="two", weight=0.8))
    )
    items = [item async for item in stub.Export(s.ExportSpaceRequest(memory_space_id=source))]
    kinds = [item.WhichOneof("item") for item in items]
    assert kinds == ["header", "memory", "memory", "memory", "end"]
    assert items[0].header.settings.dim == DIM and items[0].header.space == source
    assert (items[-1].end.memories, items[-1].end.links) == (3, 1)

    async def stream(space: str, its: list[s.ExportItem]) -> AsyncIterator[s.ImportRequest]:
        yield s.ImportRequest(memory_space_id=space, create=True, item=its[0])
        for item in its[1:]:
            yield s.ImportRequest(item=item)

    done = await stub.Import(stream(target, items))
    assert (done.space, done.created, done.memories, done.links) == (target, True, 3, 1)
    copied = await stub.ListMemories(s.ListMemoriesRequest(memory_space_id=target))
    assert [(x.id, x.content, x.confidence) for x in copied.memories] == [
        (x.memory.id, x.memory.content, x.memory.confidence) for x in items[1:-1]
    ]
    assert dict(copied.memories[0].metadata) == {"k": "v"}
    again = [item async for item in stub.Export(s.ExportSpaceRequest(memory_space_id=target))]

    def links(its: list[s.ExportItem]) -> list[tuple[str, list[tuple[str, float]]]]:
        return [
            (x.memory.id, [(link.target, link.weight) for link in x.memory.links])
            for x in its
            if x.HasField("memory")
        ]

    assert (
        links(again)
        == links(items)
        == [
            ("one", []),
            ("two", [("one", pytest.approx(0.8))]),
            ("three", []),
        ]
    )

    # a bad item: nothing is imported, the error names the message
    broken = list(items)
    broken[2] = s.ExportItem(memory=q.ExportedMemory(id="two", content="two", confidence=2.0))
    empty = sid()
    err = await refused(stub.Import(stream(empty, broken)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("line 3: confidence"), err.details()
    nothing = await refused(stub.GetSpace(s.GetSpaceRequest(memory_space_id=empty)))
    assert nothing.code() == grpc.StatusCode.NOT_FOUND


# -- health, reflection, metrics --------------------------------------------------


async def test_health_reflection_and_metrics(stack: Stack) -> None:
    health = health_pb2_grpc.HealthStub(stack.open.channel)
    for service in ("", "engram.v1.MemoryService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service

    space = await new_space(stack.open.stub)
    # what `grpcurl -plaintext -d '{...}' HOST:PORT engram.v1.MemoryService/Remember`
    # does: no .proto files, only what the server's reflection describes
    found = await asyncio.to_thread(reflect_and_call, stack.open.port, space)
    assert found == ["r1"]

    text = (await stack.open.http.get("/metrics")).text
    assert 'engram_grpc_requests_total{code="OK",method="/engram.v1.MemoryService/Recall"}' in text
    assert 'code="INVALID_ARGUMENT",method="/engram.v1.MemoryService/Recall"' in text
    assert (
        'engram_grpc_request_duration_seconds_count{method="/engram.v1.MemoryService/Remember"}'
        in text
    )
    assert space not in text  # no space ids in the labels


def reflect_and_call(port: int, space: str) -> list[str]:
    """A client that knows only the server: reflection lists the services and
    describes the messages; requests are built from those descriptors (JSON in,
    as grpcurl takes it)."""
    from google.protobuf import descriptor_pool, json_format
    from google.protobuf.message_factory import GetMessageClass
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"engram.v1.MemoryService", "grpc.health.v1.Health"} <= services
        pool = descriptor_pool.DescriptorPool(db)
        service = pool.FindServiceByName("engram.v1.MemoryService")

        def call(method: str, doc: dict[str, Any]) -> dict[str, Any]:
            desc = service.methods_by_name[method]
            request = json_format.ParseDict(doc, GetMessageClass(desc.input_type)())
            answer_cls = GetMessageClass(desc.output_type)
            rpc = channel.unary_unary(
                f"/{service.full_name}/{method}",
                request_serializer=lambda r: r.SerializeToString(),
                response_deserializer=answer_cls.FromString,
            )
            return json_format.MessageToDict(rpc(request), preserving_proto_field_name=True)

        call(
            "Remember",
            {
                "memory_space_id": space,
                "memory": {"id": "r1", "content": "seen by reflection", "embedding": basis(3)},
            },
        )
        answer = call("Recall", {"memory_space_id": space, "embedding": basis(3), "k": 1})
        return [r["memory"]["id"] for r in answer["results"]]


# -- a client of the .proto files alone ---------------------------------------------


@pytest.fixture
def protoc_stubs(tmp_path: Path) -> Iterator[Any]:
    """Python stubs generated here from proto/engram/v1 (not the project's)."""
    from grpc_tools import protoc

    include = Path(protoc.__file__).resolve().parent / "_proto"
    files = [str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "engram" / "v1").glob("*.proto")]
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}"]
    assert (
        protoc.main([*args, f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", *files])
        == 0
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield (
            importlib.import_module("engram.v1.service_pb2"),
            importlib.import_module("engram.v1.service_pb2_grpc"),
            importlib.import_module("engram.v1.memory_pb2"),
            importlib.import_module("engram.v1.queries_pb2"),
        )
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "engram" or n.startswith("engram.")]:
            del sys.modules[name]


async def test_a_client_generated_from_the_proto_files_remembers_and_recalls(
    stack: Stack, protoc_stubs: Any
) -> None:
    service, grpc_stubs, memory_msgs, queries = protoc_stubs
    assert not service.__name__.startswith("engram_proto")
    space = await new_space(stack.open.stub)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.open.port}") as channel:
        stub = grpc_stubs.MemoryServiceStub(channel)
        await stub.Remember(
            service.RememberRequest(
                memory_space_id=space,
                memory=memory_msgs.MemoryIn(content="generated elsewhere", id="gen"),
            )
        )
        answer = await stub.Recall(
            queries.RecallRequest(memory_space_id=space, query="generated elsewhere", k=1)
        )
    assert [r.memory.id for r in answer.results] == ["gen"]
