"""The ``spaces.<id>.…`` subjects as an AsyncAPI document, for agents that talk to
NATS themselves (in any language).

A FastStream :class:`~faststream.nats.NatsBroker` declares every subject with the
pydantic model of its payload, purely as a description: it is never connected or
started (the worker does its NATS work with nats-py). FastStream turns the
declaration into an AsyncAPI 3.0 document. What FastStream cannot express —
the reply of a request/reply query and the ``{space}`` channel parameter — is
added to the generated document afterwards, with schemas from the same models.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from engram_contract.messages import QueryError
from engram_contract.subjects import QUERY_QUEUE
from engram_contract.verbs import COMMANDS, EVENTS, QUERIES

if TYPE_CHECKING:
    from faststream.nats import NatsBroker

SPACE_PARAMETER: Final = {
    "description": "The memory space id: 3-64 chars of [a-z0-9_-], starting with a letter "
    "or digit. A NATS user allowed `spaces.<id>.>` acts for that space only."
}
_REF = "#/components/schemas/{model}"


def public_servers(nats_url: str) -> list[str]:
    """The server URL(s) of a ``nats_url`` setting without user info (the document
    is public; credentials never go into it)."""
    servers = []
    for url in nats_url.split(","):
        parts = urlsplit(url.strip())
        host = parts.hostname or "127.0.0.1"
        netloc = f"{host}:{parts.port}" if parts.port else host
        servers.append(urlunsplit((parts.scheme or "nats", netloc, parts.path, "", "")))
    return servers


def _handler(model: type[BaseModel]) -> Callable[[Any], Awaitable[None]]:
    """A stand-in handler whose one parameter is ``model``: FastStream reads the
    payload schema off the signature (the handler never runs)."""

    async def handle(body: Any) -> None:  # pragma: no cover - never called
        raise NotImplementedError

    handle.__annotations__ = {"body": model, "return": None}
    handle.__name__ = model.__name__
    return handle


def contract_broker(servers: Sequence[str] = ("nats://127.0.0.1:4222",)) -> NatsBroker:
    """A FastStream ``NatsBroker`` declaring every ``spaces.{space}.…`` subject with its
    payload model: the service receives commands and query requests, and sends
    events. Only a description: do not connect or start it."""
    from faststream.nats import NatsBroker

    broker = NatsBroker(list(servers))
    for verb, command in COMMANDS.items():
        broker.subscriber(
            f"spaces.{{space}}.{verb}",
            title=verb,
            description=f"Command into the space's WAL (stream `ENGRAM_SPACE_<space>`). "
            f"{command.doc}",
        )(_handler(command.model))
    for name, query in QUERIES.items():
        broker.subscriber(
            f"spaces.{{space}}.q.{name}",
            queue=QUERY_QUEUE,
            title=f"q.{name}",
            description=f"Query (core NATS request/reply). {query.doc} The reply is "
            'the response document, or `{"error": QueryError}`.',
        )(_handler(query.request))
    for kind, event in EVENTS.items():
        broker.publisher(
            f"spaces.{{space}}.evt.{kind}",
            title=f"evt.{kind}",
            description=f"Event (core NATS publish). {event.doc}",
            schema=event.model,
        )
    return broker


def _schemas(model: type[BaseModel]) -> dict[str, Any]:
    """``model`` and the models it uses, as JSON schemas named like FastStream's."""
    schema = model.model_json_schema(ref_template=_REF)
    defs: dict[str, Any] = schema.pop("$defs", {})
    return {**defs, model.__name__: schema}


def _add_replies(doc: dict[str, Any]) -> None:
    """AsyncAPI 3 ``reply`` for each query: its response, or an error."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    messages = doc["components"].setdefault("messages", {})
    schemas.update(_schemas(QueryError))
    schemas["QueryErrorReply"] = {
        "title": "QueryErrorReply",
        "description": "The reply of a query that failed (mirrors problem+json).",
        "type": "object",
        "properties": {"error": {"$ref": _REF.format(model="QueryError")}},
        "required": ["error"],
        "additionalProperties": False,
    }
    for name, query in QUERIES.items():
        response = query.response
        schemas.update(_schemas(response))
        channel, message = f"q.{name}.reply", f"q.{name}:Reply"
        messages[message] = {
            "title": message,
            "payload": {
                "oneOf": [
                    {"$ref": _REF.format(model=response.__name__)},
                    {"$ref": _REF.format(model="QueryErrorReply")},
                ]
            },
        }
        doc["channels"][channel] = {
            "address": None,  # the requester's inbox
            "description": f"Replies to `spaces.{{space}}.q.{name}` (the request's inbox).",
            "messages": {"Reply": {"$ref": f"#/components/messages/{message}"}},
        }
        doc["operations"][f"q.{name}"]["reply"] = {
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/Reply"}],
        }


def asyncapi_document(
    servers: Sequence[str] = ("nats://127.0.0.1:4222",), version: str = "0"
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the ``spaces.<id>.…`` subjects, as JSON data."""
    from faststream.specification import AsyncAPI

    spec = AsyncAPI(
        contract_broker(servers),
        title="Engram over NATS",
        version=version,
        description="Commands, queries and events of a memory space. Message bodies "
        "are JSON; `memory_space_id` (optional) must name the subject's space. "
        "The same contract as protobuf: proto/engram/v1.",
        schema_version="3.0.0",
    ).to_specification()
    doc: dict[str, Any] = spec.to_jsonable()
    for message in doc["components"]["messages"].values():
        # FastStream's default; Engram correlates by command_id and request inbox
        message.pop("correlationId", None)
    _add_replies(doc)
    for channel in doc["channels"].values():
        if channel.get("address"):
            channel["parameters"] = {"space": SPACE_PARAMETER}
    return doc
