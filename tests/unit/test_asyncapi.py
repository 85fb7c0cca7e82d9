"""The AsyncAPI document lists every subject of subjects.py with the schema of its
payload model (FastStream builds it from a broker that is never connected)."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from pydantic import BaseModel

from engram_contract.asyncapi import asyncapi_document, public_servers
from engram_contract.messages import QueryError
from engram_contract.subjects import CommandVerb, EventKind, QueryName
from engram_contract.verbs import COMMANDS, EVENTS, QUERIES


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi_document(["nats://127.0.0.1:4222"], version="1.2.3")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(doc, node["$ref"])
    return node


def channel_by_address(doc: dict[str, Any], address: str) -> tuple[str, dict[str, Any]]:
    found = [(k, c) for k, c in doc["channels"].items() if c.get("address") == address]
    assert len(found) == 1, f"{address}: {len(found)} channels"
    return found[0]


def payloads(doc: dict[str, Any], channel: dict[str, Any]) -> list[dict[str, Any]]:
    return [deref(doc, deref(doc, m)["payload"]) for m in channel["messages"].values()]


def assert_model_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    assert schema["title"] == model.__name__
    assert set(schema["properties"]) == set(model.model_fields)
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert set(schema.get("required", [])) == required


def operation_of(doc: dict[str, Any], channel_key: str) -> dict[str, Any]:
    ops = [
        o for o in doc["operations"].values() if o["channel"]["$ref"].endswith(f"/{channel_key}")
    ]
    assert len(ops) == 1
    return ops[0]


def test_document_header(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["version"] == "1.2.3"
    assert doc["defaultContentType"] == "application/json"
    assert [s["protocol"] for s in doc["servers"].values()] == ["nats"]


def test_the_maps_cover_subjects_py() -> None:
    assert set(COMMANDS) == set(get_args(CommandVerb))
    assert set(QUERIES) == set(get_args(QueryName))
    assert set(EVENTS) == set(get_args(EventKind))


@pytest.mark.parametrize("verb", get_args(CommandVerb))
def test_every_command(doc: dict[str, Any], verb: str) -> None:
    key, channel = channel_by_address(doc, f"spaces.{{space}}.{verb}")
    assert "space" in channel["parameters"]
    (schema,) = payloads(doc, channel)
    assert_model_schema(schema, COMMANDS[verb].model)
    assert "memory_space_id" in schema["properties"]
    assert operation_of(doc, key)["action"] == "receive"


@pytest.mark.parametrize("name", get_args(QueryName))
def test_every_query_with_request_and_reply(doc: dict[str, Any], name: str) -> None:
    request, response = QUERIES[name].request, QUERIES[name].response
    key, channel = channel_by_address(doc, f"spaces.{{space}}.q.{name}")
    (schema,) = payloads(doc, channel)
    assert_model_schema(schema, request)
    assert "memory_space_id" in schema["properties"]
    op = operation_of(doc, key)
    assert op["action"] == "receive"
    reply_channel = deref(doc, op["reply"]["channel"])
    assert reply_channel["address"] is None  # the requester's inbox
    (reply,) = payloads(doc, reply_channel)
    ok, error = (deref(doc, alt) for alt in reply["oneOf"])
    assert_model_schema(ok, response)
    assert set(error["properties"]) == {"error"}
    assert_model_schema(deref(doc, error["properties"]["error"]), QueryError)
    assert deref(doc, op["reply"]["messages"][0]) == deref(doc, reply_channel["messages"]["Reply"])


@pytest.mark.parametrize("kind", get_args(EventKind))
def test_every_event(doc: dict[str, Any], kind: str) -> None:
    key, channel = channel_by_address(doc, f"spaces.{{space}}.evt.{kind}")
    (schema,) = payloads(doc, channel)
    assert_model_schema(schema, EVENTS[kind].model)
    assert operation_of(doc, key)["action"] == "send"


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(doc, node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)


def test_servers_never_carry_credentials() -> None:
    assert public_servers("nats://user:secret@nats.example:4222, tls://h2") == [
        "nats://nats.example:4222",
        "tls://h2",
    ]
    doc = asyncapi_document(public_servers("nats://user:secret@nats.example:4222"))
    assert "secret" not in str(doc) and "user" not in str(doc["servers"])


def test_each_command_announces_a_declared_event() -> None:
    assert {spec.event for spec in COMMANDS.values()} <= set(EVENTS)
