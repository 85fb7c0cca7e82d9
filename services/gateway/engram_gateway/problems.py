"""RFC 9457 problem+json: every error the gateway returns has this shape."""

from __future__ import annotations

import logging
import math
from typing import Any, TypeVar

from litestar import Request, Response
from litestar.exceptions import HTTPException
from pydantic import BaseModel, ValidationError

from engram_contract.errors import EngramError, InvalidInput, error_for, invalid_input
from engram_gateway.infra_errors import classify

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://engram.dev/problems/"


def problem_body(exc: EngramError, instance: str | None = None) -> dict[str, Any]:
    """The RFC 9457 document of an error (with Engram's ``hint`` and ``errors``)."""
    doc: dict[str, Any] = {
        "type": TYPE_BASE + exc.slug,
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
    }
    if instance:
        doc["instance"] = instance
    if exc.hint:
        doc["hint"] = exc.hint
    if exc.errors:
        doc["errors"] = exc.errors
    return doc


def invalid_body(exc: ValidationError) -> InvalidInput:
    """A 400 naming each offending field of a request body."""
    return invalid_input(exc, hint="Fix the named fields; see /schema for the request shapes.")


def parse_body(model: type[M], raw: bytes) -> M:
    """Validate a JSON body straight from bytes (one pass, no intermediate dict)."""
    if not raw.strip():
        raise InvalidInput(
            400,
            "Malformed JSON",
            "the request body is empty; send a JSON object",
            hint="Send a JSON document with Content-Type: application/json.",
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        bad_json = [e for e in exc.errors() if e["type"] == "json_invalid"]
        if bad_json:
            raise InvalidInput(
                400,
                "Malformed JSON",
                f"the request body is not valid JSON: {bad_json[0]['msg']}",
                hint="Send a JSON document with Content-Type: application/json.",
            ) from None
        raise invalid_body(exc) from None


def problem_response(request: Request[Any, Any, Any], exc: EngramError) -> Response[Any]:
    """The problem+json answer for an error (``Retry-After`` when it has one)."""
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(0, math.ceil(exc.retry_after)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="engram"'

    return Response(
        content=problem_body(exc, request.url.path),
        status_code=exc.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    title = {
        400: "Bad request",
        404: "Not found",
        405: "Method not allowed",
        413: "Request too large",
    }.get(status, "HTTP error")
    detail = exc.detail or title
    if status == 400 and "JSON" in detail:
        title = "Malformed JSON"
    named = _named_fields(exc)
    if status == 400 and named:
        # Litestar's check of a query/path parameter: name what the client sent
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in named)
        return problem_response(
            request,
            error_for(
                400,
                "Invalid input",
                detail,
                errors=named,
                hint="Fix the named parameters; see /schema for the request shapes.",
            ),
        )
    return problem_response(request, error_for(status, title, detail))


def _named_fields(exc: HTTPException) -> list[dict[str, Any]]:
    """The parameters a Litestar validation error names (``extra``: ``key``,
    ``message``, ``source``)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    return [
        {"field": str(e["key"]), "message": str(e.get("message") or "invalid")}
        for e in extra
        if isinstance(e, dict) and e.get("key")
    ]


def handle_internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    known = classify(exc)  # the broker down or a JetStream limit: not a bug
    if known is not None:
        log.warning("%s %s: %s", request.method, request.url.path, known)
        return problem_response(request, known)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        EngramError(
            500,
            "Internal error",
            f"{type(exc).__name__}: {exc}",
            hint="This is a bug in Engram; the request may be retried.",
        ),
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    EngramError: problem_response,
    HTTPException: handle_http_exception,
    Exception: handle_internal,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "parse_body", "problem_body", "problem_response"]
