"""RFC 9457 problem+json: every error the gateway returns has this shape."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from litestar import Request, Response
from litestar.exceptions import HTTPException
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://engram.dev/problems/"


class Problem(Exception):
    """Raise anywhere in a handler to answer with problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        hint: str | None = None,
        slug: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.hint = hint
        self.slug = slug or title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        if self.hint:
            doc["hint"] = self.hint
        if self.errors:
            doc["errors"] = self.errors
        return doc


def _loc(loc: tuple[int | str, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def invalid_input(exc: ValidationError, prefix: str = "") -> Problem:
    """A 400 naming each offending field, e.g. ``memories[2].confidence``."""
    errors = [{"field": _loc(tuple(e["loc"]), prefix), "message": e["msg"]} for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    return Problem(
        400,
        "Invalid input",
        detail,
        hint="Fix the named fields; see /schema for the request shapes.",
        errors=errors,
    )


def field_problem(field: str, message: str, hint: str | None = None) -> Problem:
    return Problem(
        400,
        "Invalid input",
        f"{field}: {message}",
        hint=hint,
        errors=[{"field": field, "message": message}],
    )


def parse_body(model: type[M], raw: bytes) -> M:
    """Validate a JSON body straight from bytes (one pass, no intermediate dict)."""
    if not raw.strip():
        raise Problem(
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
            raise Problem(
                400,
                "Malformed JSON",
                f"the request body is not valid JSON: {bad_json[0]['msg']}",
                hint="Send a JSON document with Content-Type: application/json.",
            ) from None
        raise invalid_input(exc) from None


def problem_response(request: Request[Any, Any, Any], problem: Problem) -> Response[Any]:
    return Response(
        content=problem.body(request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def handle_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[Any]:
    return problem_response(request, exc)


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
    return problem_response(request, Problem(status, title, detail))


def handle_internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        Problem(
            500,
            "Internal error",
            f"{type(exc).__name__}: {exc}",
            hint="This is a bug in Engram; the request may be retried.",
        ),
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    Problem: handle_problem,
    HTTPException: handle_http_exception,
    Exception: handle_internal,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "Problem"]
