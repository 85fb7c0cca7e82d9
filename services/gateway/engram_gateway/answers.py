"""The shapes of the gateway's own HTTP answers (what a handler builds as a dict,
not a worker's reply forwarded): the OpenAPI document describes them with these
models, and the schemathesis run checks every response against them. Handlers
build the dicts directly (no model on the hot path)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from engram_contract.keys import KeyInfo
from engram_contract.messages import Model, NatsClusterState, SpaceRecord


class FieldProblem(Model):
    """One offending field of a refused request."""

    field: str = Field(description="Where, e.g. `memories[2].confidence` or `line 3.id`.")
    message: str


class Problem(Model):
    """RFC 9457 problem details: every error the gateway answers with
    (`application/problem+json`)."""

    type: str = Field(description="`https://engram.dev/problems/<slug>`.")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str | None = Field(default=None, description="The request's path.")
    hint: str | None = Field(default=None, description="What to do about it.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="Each offending field (invalid input)."
    )


class Health(Model):
    status: Literal["ok"]


class Readiness(Model):
    status: Literal["ready", "not ready"]
    nats_connected: bool
    registry_loaded: bool
    nats_cluster: NatsClusterState | None = Field(
        description="null: one server, or its state could not be read just now."
    )


class SpaceList(Model):
    spaces: list[SpaceRecord]


class SpaceDetail(SpaceRecord):
    """A space's record with its memory count and the worker's applied sequence."""

    memories: int
    applied_seq: int


class SpaceDeleted(Model):
    id: str
    status: Literal["deleted"]


class Remembered(Model):
    ids: list[str] = Field(description="The memories' ids, in the order sent.")
    seq: int = Field(description="The last stream sequence written.")


class Written(Model):
    seq: int = Field(description="The stream sequence of the command.")


class ForgotMany(Model):
    seq: int = Field(description="The stream sequence of the last forget command.")
    count: int


class KeyList(Model):
    keys: list[KeyInfo]


#: any JSON object (the AsyncAPI document)
JSON_OBJECT: dict[str, Any] = {"type": "object"}
#: a text body (Prometheus metrics, an event stream, NDJSON lines)
TEXT: dict[str, Any] = {"type": "string"}

__all__ = [
    "JSON_OBJECT",
    "TEXT",
    "FieldProblem",
    "ForgotMany",
    "Health",
    "KeyList",
    "Problem",
    "Readiness",
    "Remembered",
    "SpaceDeleted",
    "SpaceDetail",
    "SpaceList",
    "Written",
]
