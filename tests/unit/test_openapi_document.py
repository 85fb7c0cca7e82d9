"""The OpenAPI document describes the API as it behaves (what clients are
generated from and what the schemathesis run checks responses against): every
route's request body, every status it answers with and its schema, the id rules
of path parameters, the bearer scheme where a key is needed, links that name
real operations."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis

from engram_contract.errors import (
    RateLimited,
    error_for,
    field_error,
    space_not_found,
)
from engram_contract.ids import MEMORY_ID_PATTERN, SPACE_ID_PATTERN
from engram_contract.settings import GatewaySettings
from engram_gateway.answers import Problem
from engram_gateway.app import create_app
from engram_gateway.openapi import openapi_document, undeclared
from engram_gateway.problems import problem_body

PROBLEM_REF = "#/components/schemas/Problem"
OPEN = {"/health", "/ready", "/metrics"}
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document(create_app(GatewaySettings(auth="required")), keys_required=True)


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return dict(doc["components"]["schemas"][ref.rsplit("/", 1)[-1]])


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(doc).validate()  # against the OpenAPI meta-schema


def test_every_route_declares_what_it_takes_and_answers() -> None:
    assert undeclared(create_app(GatewaySettings())) == []


def test_every_route_is_documented_once_with_its_handler_name(doc: dict[str, Any]) -> None:
    ops = operations(doc)
    assert len(ops) >= 29
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids))
    by_id = {op["operationId"]: (m, p) for m, p, op in ops}
    assert by_id["create_space"] == ("post", "/api/v1/spaces")
    assert by_id["remember"] == ("post", "/api/v1/spaces/{space}/memories")
    assert by_id["recall"] == ("post", "/api/v1/spaces/{space}/recall")


def test_every_route_that_takes_a_body_declares_its_schema(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        where = f"{method.upper()} {path}"
        if method != "post":  # the GET and DELETE routes read no body
            assert "requestBody" not in op, where
            continue
        body = op.get("requestBody")
        assert body is not None, where
        ((media, content),) = body["content"].items()
        schema = content["schema"]
        if path.endswith("/import"):
            assert media == "application/x-ndjson", where
            continue
        assert media == "application/json", where
        refs = [s["$ref"] for s in schema.get("anyOf", [schema])]
        for ref in refs:
            name = ref.rsplit("/", 1)[-1]
            assert doc["components"]["schemas"][name]["type"] == "object", (where, name)
    remember = doc["paths"]["/api/v1/spaces/{space}/memories"]["post"]["requestBody"]
    one_or_batch = remember["content"]["application/json"]["schema"]["anyOf"]
    assert [s["$ref"].rsplit("/", 1)[-1] for s in one_or_batch] == ["MemoryIn", "MemoryBatch"]
    # unknown fields are refused (extra="forbid"): the schema says so
    memory_in = doc["components"]["schemas"]["MemoryIn"]
    assert memory_in["additionalProperties"] is False
    consolidate = doc["paths"]["/api/v1/spaces/{space}/consolidate"]["post"]["requestBody"]
    assert consolidate["required"] is False  # an empty body takes the defaults


def test_every_route_declares_its_error_responses_as_problems(doc: dict[str, Any]) -> None:
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    for method, path, op in operations(doc):
        where = f"{method.upper()} {path}"
        statuses = {int(s) for s in op["responses"]}
        assert any(200 <= s < 300 for s in statuses), where
        if path not in OPEN:
            assert {401, 403, 429} <= statuses, where
            assert op["security"] == [{"bearer": []}], where
            assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
            assert op["responses"]["429"]["headers"]["Retry-After"]["required"]
        else:
            assert op["security"] == [], where
        if "{space}" in path or any(p["name"] == "space" for p in op.get("parameters", [])):
            assert {400, 404} <= statuses, where  # an invalid id, a space that is not there
        if "requestBody" in op:
            assert {400, 413} <= statuses, where
        for status, response in op["responses"].items():
            if int(status) < 400 or path == "/ready":  # /ready's 503 is its own body
                continue
            assert response["content"] == {
                "application/problem+json": {"schema": {"$ref": PROBLEM_REF}}
            }, (where, status)
            assert response["description"], (where, status)


def test_every_problem_the_gateway_renders_fits_the_problem_schema() -> None:
    for exc in (
        field_error("memories[2].confidence", "Input should be less than or equal to 1"),
        space_not_found("alpha", "Create it first."),
        RateLimited(429, "Too many requests", "over the rate", retry_after=0.5),
        error_for(503, "No worker", "no worker serves space 'alpha'"),
    ):
        doc = problem_body(exc, "/api/v1/spaces/alpha/memories")
        assert Problem.model_validate(doc).status == exc.status


def test_success_bodies_have_their_media_types(doc: dict[str, Any]) -> None:
    def ok(path: str, method: str = "get", status: str = "200") -> dict[str, Any]:
        return dict(doc["paths"][path][method]["responses"][status])

    assert set(ok("/metrics")["content"]) == {"text/plain"}
    assert set(ok("/api/v1/spaces/{space}/events")["content"]) == {"text/event-stream"}
    assert set(ok("/api/v1/spaces/{space}/export")["content"]) == {"application/x-ndjson"}
    assert "content" not in ok("/api/v1/keys/{key_id}", "delete", "204")
    created = ok("/api/v1/spaces", "post", "201")["content"]["application/json"]["schema"]
    assert resolve(doc, created)["title"] == "SpaceRecord"
    ready = ok("/ready", "get", "503")["content"]["application/json"]["schema"]
    assert resolve(doc, ready)["title"] == "Readiness"


def test_path_parameters_carry_the_id_rules(doc: dict[str, Any]) -> None:
    seen = set()
    for method, path, op in operations(doc):
        for p in op.get("parameters", []):
            if p["in"] != "path":
                continue
            seen.add(p["name"])
            schema = p["schema"]
            assert schema["type"] == "string" and "pattern" in schema, (method, path, p)
            assert schema["minLength"] >= 1 and schema["maxLength"] <= 128, (method, path, p)
            if p["name"] == "space":
                assert schema["pattern"] == SPACE_ID_PATTERN
                assert (schema["minLength"], schema["maxLength"]) == (3, 64)
            elif p["name"] == "memory_id":
                assert schema["pattern"] == MEMORY_ID_PATTERN
    assert seen == {"space", "memory_id", "key_id"}
    key_id = re.compile(
        doc["paths"]["/api/v1/keys/{key_id}"]["delete"]["parameters"][0]["schema"]["pattern"]
    )
    assert key_id.search("0123456789ab") and key_id.search("env-admin")
    assert not key_id.search("a.b")


def test_legacy_routes_take_the_space_from_a_header_or_the_query(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/v1/recall"]["post"]
    params = {(p["in"], p["name"]): p for p in op["parameters"]}
    assert params[("header", "X-Memory-Space")]["schema"]["pattern"] == SPACE_ID_PATTERN
    assert params[("query", "space")]["schema"]["pattern"] == SPACE_ID_PATTERN
    assert "Deprecation" in op["responses"]["200"]["headers"]


def test_links_lead_to_real_operations(doc: dict[str, Any]) -> None:
    by_id = {op["operationId"]: op for _, _, op in operations(doc)}
    links = 0
    for _, _, op in operations(doc):
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                target = by_id[link["operationId"]]
                names = {p["name"] for p in target.get("parameters", [])}
                assert set(link["parameters"]) <= names, link
                links += 1
    assert links >= 10
    created = doc["paths"]["/api/v1/spaces"]["post"]["responses"]["201"]["links"]
    assert created["remember"]["parameters"] == {"space": "$response.body#/id"}
    remembered = doc["paths"]["/api/v1/spaces/{space}/memories"]["post"]["responses"]["202"]
    assert remembered["links"]["get_first"]["parameters"]["memory_id"] == "$response.body#/ids/0"


def test_keys_off_makes_the_key_optional(doc: dict[str, Any]) -> None:
    relaxed = openapi_document(create_app(GatewaySettings(auth="off")), keys_required=False)
    op = relaxed["paths"]["/api/v1/spaces"]["get"]
    assert op["security"] == [{"bearer": []}, {}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
