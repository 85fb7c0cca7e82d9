"""The OpenAPI document, as precise as the API really is.

Handlers read their request bodies raw (``model_validate_json`` / msgspec on the
bytes, the fast path) and forward workers' replies as bytes, so Litestar alone
sees neither a request body nor a response shape. Each route declares what it
takes and answers in its ``opt`` with :func:`api` (next to its auth role, which
decides the ``401``/``403``/``429`` answers and the security requirement), and
:func:`complete` adds it to the document Litestar generates, once, when
``/schema/openapi.json`` is first asked for:

- request bodies: the pydantic JSON schemas (validation mode) of the models the
  handler validates the bytes with;
- every status a route answers with, its media type and schema: the success
  answers (pydantic, serialization mode), and every error as the shared
  ``Problem`` component (``application/problem+json``), with ``WWW-Authenticate``
  on 401 and ``Retry-After`` on 429 / 503;
- path parameters with the id rules of :mod:`engram_contract.ids` (pattern,
  length), the request headers routes read (``Idempotency-Key``,
  ``X-Memory-Space``, ``Last-Event-ID``);
- the bearer security scheme on every route that takes a key;
- ``links`` from a created resource to the operations on it (stateful clients
  and fuzzers follow them);
- handler names as operation ids (``create_space``, ``recall``…), for generated
  clients.

A post-processing step rather than Litestar's ``data:`` parameter or
``ResponseSpec``: a ``data`` parameter would make Litestar decode and validate
the body itself (giving up the raw-bytes path), and Litestar's rendering of a
model is not what pydantic validates (for ``MemoryIn`` it leaves out
``additionalProperties: false`` and the id pattern, and makes ``metadata``, a
dict, an array). One step that uses pydantic's own schemas in both directions
keeps the document equal to the validation, and a handler keeps one decorator
argument.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin
from litestar.routes import HTTPRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from engram_contract import __version__
from engram_gateway.answers import Problem
from engram_gateway.auth import required_role
from engram_gateway.openapi_rules import (
    KEY_REQUEST_SHAPES,
    PATH_PARAMETERS,
    PROPERTY_RULES,
    QUERY_PARAMETERS,
    RETRY_AFTER,
    WHEN,
    Header,
)
from engram_gateway.problems import PROBLEM_JSON

JSON = "application/json"
COMPONENTS = "#/components/schemas/{model}"
BEARER = "bearer"
SchemaLike = type[BaseModel] | tuple[type[BaseModel], ...] | Mapping[str, Any]

#: answered by every route that takes a key (the guard's)
AUTH_ERRORS = frozenset({401, 403, 429})


@dataclass(frozen=True)
class Content:
    """A body: its schema (a pydantic model, several of them — any one of — or a
    JSON schema) and media type; ``required`` for a request body."""

    schema: SchemaLike
    media_type: str = JSON
    required: bool = True
    description: str = ""

    def optional(self, description: str) -> Content:
        """This body, as a request body that may be left out."""
        return dataclasses.replace(self, required=False, description=description)


@dataclass(frozen=True)
class Link:
    """From a response to an operation it makes possible: ``parameters`` maps the
    target's parameters to runtime expressions (``$response.body#/id``)."""

    operation_id: str
    parameters: Mapping[str, str]
    description: str = ""


@dataclass(frozen=True)
class Api:
    """What a route takes and answers, beyond what Litestar sees in its signature."""

    ok: Mapping[int, Content | None]
    body: Content | None = None
    errors: frozenset[int] = frozenset()
    headers: tuple[Header, ...] = ()
    query: tuple[Header, ...] = ()
    links: Mapping[int, Mapping[str, Link]] = field(default_factory=dict)
    response_headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def api(
    ok: Mapping[int, Content | SchemaLike | None],
    *,
    body: Content | SchemaLike | None = None,
    errors: Iterable[int] = (),
    headers: Iterable[Header] = (),
    query: Iterable[Header] = (),
    links: Mapping[int, Mapping[str, Link]] | None = None,
    response_headers: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Api]:
    """A route's ``opt`` entry: ``opt=WRITE | api(...)``. ``ok``: the success
    statuses and their bodies (None: no body); ``errors``: the error statuses
    besides the guard's (401, 403, 429 on every route that takes a key) and 413
    (every route with a body)."""
    errs = set(errors)
    if body is not None:
        errs.add(413)
    return {
        "api": Api(
            ok={s: _content(c) for s, c in ok.items()},
            body=_content(body),
            errors=frozenset(errs),
            headers=tuple(headers),
            query=tuple(query),
            links=links or {},
            response_headers=response_headers or {},
        )
    }


def _content(c: Content | SchemaLike | None) -> Content | None:
    if c is None or isinstance(c, Content):
        return c
    return Content(c)


# -- the document -------------------------------------------------------------------------


def complete(generated: Mapping[str, Any], app: Litestar, keys_required: bool) -> dict[str, Any]:
    """The document Litestar ``generated`` for ``app``, with every route's :class:`Api`."""
    doc = copy.deepcopy(dict(generated))
    operations = list(_operations(doc, app))
    models = _models(spec for _, _, spec, _ in operations)
    refs, defs = models_json_schema(list(models), ref_template=COMPONENTS)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))
    _refine(schemas)
    doc["components"]["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`engram key create`; `ENGRAM_ADMIN_KEY`). Required "
            "when the gateway requires keys (ENGRAM_AUTH); otherwise a key sent is still "
            "checked.",
        }
    }

    def schema_of(s: SchemaLike, mode: str) -> dict[str, Any]:
        if isinstance(s, type):
            return dict(refs[(s, mode)])  # type: ignore[index]
        if isinstance(s, tuple):
            return {"anyOf": [dict(refs[(m, mode)]) for m in s]}  # type: ignore[index]
        return dict(s)

    used_ids: set[str] = set()
    for op, name, spec, keyed in operations:
        # the handler's name (a route on two paths: the second gets a suffix)
        op_id, n = name, 1
        while op_id in used_ids:
            n += 1
            op_id = f"{name}_{n}"
        op["operationId"] = op_id
        used_ids.add(op_id)
        _parameters(op, spec)
        if spec.body is not None:
            op["requestBody"] = {
                "required": spec.body.required,
                "description": spec.body.description or "See the operation's description.",
                "content": {
                    spec.body.media_type: {"schema": schema_of(spec.body.schema, "validation")}
                },
            }
        responses: dict[str, Any] = {}
        for status, content in sorted(spec.ok.items()):
            responses[str(status)] = _success(status, content, spec, schema_of)
        for status in sorted(spec.errors | (AUTH_ERRORS if keyed else frozenset())):
            responses[str(status)] = _problem(status)
        op["responses"] = responses
        op["security"] = ([{BEARER: []}] if keys_required else [{BEARER: []}, {}]) if keyed else []
    return doc


def _operations(
    doc: dict[str, Any], app: Litestar
) -> Iterable[tuple[dict[str, Any], str, Api, bool]]:
    """``(operation, handler name, Api, takes a key)`` of every documented route
    that declares its :class:`Api` (one that does not keeps what Litestar made of
    it; :func:`undeclared` names them, and a unit test keeps that list empty)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format not in doc["paths"]:
            continue
        item = doc["paths"][route.path_format]
        for handler in route.route_handlers:
            spec = handler.opt.get("api")
            for method in handler.http_methods:
                op = item.get(method.lower())
                if op is None:
                    continue
                if not isinstance(spec, Api):
                    continue
                keyed = required_role(handler, route.path_format) is not None
                yield op, handler.handler_name, spec, keyed


def _models(specs: Iterable[Api]) -> dict[tuple[type[BaseModel], Any], None]:
    """Every model a document needs, in a stable order: request bodies in
    validation mode, answers in serialization mode, and the problem."""
    out: dict[tuple[type[BaseModel], Any], None] = {(Problem, "serialization"): None}

    def add(s: SchemaLike | None, mode: str) -> None:
        if isinstance(s, type):
            out[(s, mode)] = None
        elif isinstance(s, tuple):
            for m in s:
                out[(m, mode)] = None

    for spec in specs:
        if spec.body is not None:
            add(spec.body.schema, "validation")
        for content in spec.ok.values():
            if content is not None:
                add(content.schema, "serialization")
    return out


def _refine(schemas: dict[str, Any]) -> None:
    """What the models check in validators, said in their schemas where JSON
    Schema can say it."""
    for (name, prop), rule in PROPERTY_RULES.items():
        if name in schemas:
            schemas[name]["properties"][prop] = dict(rule)
    if "KeyRequest" in schemas:
        schemas["KeyRequest"]["oneOf"] = KEY_REQUEST_SHAPES


def _parameters(op: dict[str, Any], spec: Api) -> None:
    params: list[dict[str, Any]] = []
    for p in op.get("parameters", []):
        if p["in"] == "path" and p["name"] in PATH_PARAMETERS:
            p = {**p, "schema": dict(PATH_PARAMETERS[p["name"]])}
        elif p["in"] == "query" and p["name"] in QUERY_PARAMETERS:
            rule = QUERY_PARAMETERS[p["name"]]
            p = {**p, "schema": {**rule, "description": p.get("description", "")}}
        params.append(p)
    for where, extra in (("header", spec.headers), ("query", spec.query)):
        params.extend(
            {
                "name": h.name,
                "in": where,
                "required": False,
                "description": h.description,
                "schema": dict(h.schema),
            }
            for h in extra
        )
    if params:
        op["parameters"] = params


def _success(status: int, content: Content | None, spec: Api, schema_of: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"description": content.description if content else ""}
    out["description"] = out["description"] or {
        200: "OK",
        201: "Created",
        202: "Accepted: the command is in the WAL.",
        204: "Done; no body.",
        503: "Not ready.",
    }.get(status, "OK")
    if content is not None:
        out["content"] = {
            content.media_type: {"schema": schema_of(content.schema, "serialization")}
        }
    if spec.response_headers:
        out["headers"] = {k: dict(v) for k, v in spec.response_headers.items()}
    links = spec.links.get(status)
    if links:
        out["links"] = {
            name: {
                "operationId": link.operation_id,
                "parameters": dict(link.parameters),
                **({"description": link.description} if link.description else {}),
            }
            for name, link in links.items()
        }
    return out


def _problem(status: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": WHEN[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": COMPONENTS.format(model="Problem")}}},
    }
    if status == 401:
        out["headers"] = {
            "WWW-Authenticate": {
                "required": True,
                "description": '`Bearer realm="engram"`.',
                "schema": {"type": "string", "pattern": "^Bearer"},
            }
        }
    elif status == 429:
        out["headers"] = {"Retry-After": {**RETRY_AFTER, "required": True}}
    elif status == 503:
        out["headers"] = {"Retry-After": dict(RETRY_AFTER)}
    return out


# -- serving it ---------------------------------------------------------------------------


class PreciseJsonRenderPlugin(JsonRenderPlugin):
    """``/schema/openapi.json``: the generated document :func:`complete`-d, built
    and encoded on the first request, then served as it is."""

    def __init__(self, keys_required: bool) -> None:
        super().__init__()
        self.keys_required = keys_required
        self._body: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._body is None:
            doc = complete(openapi_schema, request.app, self.keys_required)
            self._body = json.dumps(doc, ensure_ascii=False).encode()
        return self._body


def openapi_config(keys_required: bool) -> OpenAPIConfig:
    """The app's OpenAPI config: ``/schema`` (Scalar), ``/schema/openapi.json``."""
    return OpenAPIConfig(
        title="Engram",
        version=__version__,
        description="Cognitive memory for AI agents: private memory spaces on NATS JetStream. "
        "Every error is RFC 9457 `application/problem+json` (the `Problem` schema).",
        path="/schema",
        render_plugins=[ScalarRenderPlugin(), PreciseJsonRenderPlugin(keys_required)],
    )


def undeclared(app: Litestar) -> list[str]:
    """The documented routes that declare no ``opt=api(...)``."""
    return [
        f"{method} {route.path_format}"
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if handler.resolve_include_in_schema() and not isinstance(handler.opt.get("api"), Api)
        for method in sorted(handler.http_methods)
    ]


def openapi_document(app: Litestar, keys_required: bool) -> dict[str, Any]:
    """The document ``/schema/openapi.json`` serves (for tests and tools)."""
    return complete(app.openapi_schema.to_schema(), app, keys_required)


__all__ = [
    "Api",
    "Content",
    "Header",
    "Link",
    "api",
    "complete",
    "openapi_config",
    "openapi_document",
    "undeclared",
]
