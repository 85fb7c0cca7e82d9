"""The SDK over the gateway's HTTP API (httpx)."""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from engram_client.base import Event, EventStream, SpaceInfo, Written, parse_event
from engram_client.errors import EngramError, Timeout, Unavailable, error_for
from engram_contract.messages import (
    CreateSpace,
    LinkIn,
    ListRequest,
    ListResponse,
    Memory,
    MemoryIn,
    RecallRequest,
    RecallResponse,
    SpaceRecord,
)

API = "/api/v1"


def _seg(value: str) -> str:
    """One path segment (ids never hold ``/``, but a bad one must not change the route)."""
    return quote(value, safe="")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def problem_error(response: httpx.Response, body: bytes) -> EngramError:
    """The SDK error for a problem+json answer (or any other error answer)."""
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError(doc)
    except ValueError:
        doc = {"detail": body.decode(errors="replace").strip()[:500] or response.reason_phrase}
    return error_for(
        response.status_code,
        str(doc.get("title") or response.reason_phrase),
        str(doc.get("detail") or ""),
        hint=doc.get("hint"),
        errors=doc.get("errors"),
        retry_after=_retry_after(response),
    )


def key_headers(api_key: str | None = None) -> dict[str, str]:
    """``Authorization: Bearer`` for ``api_key``, else for ``ENGRAM_API_KEY`` when it
    is set (nothing when neither is)."""
    key = api_key if api_key is not None else os.environ.get("ENGRAM_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


class HttpTransport:
    """Talks to a gateway at ``url``: the gateway validates, embeds, publishes
    (answering once JetStream acknowledged) and forwards queries."""

    def __init__(self, url: str, *, timeout: float = 30.0, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"User-Agent": "engram-sdk", **key_headers(api_key)}
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("the client is not open: use `async with EngramClient.http(...)`")
        return self._client

    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.url, timeout=self.timeout, headers=self.headers
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _unreachable(self, exc: httpx.HTTPError) -> Unavailable:
        if isinstance(exc, httpx.TimeoutException):
            return Timeout(
                504,
                "Gateway timeout",
                f"the gateway at {self.url} did not answer in {self.timeout:g} s",
            )
        reason = str(exc) or type(exc).__name__
        return Unavailable(
            503, "Gateway unreachable", f"cannot reach the gateway at {self.url}: {reason}"
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = await self.client.request(
                method, API + path, json=body, params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise problem_error(response, response.content)
        try:
            return response.json()
        except ValueError:
            raise EngramError(
                response.status_code,
                "Not JSON",
                f"the gateway at {self.url} answered something not JSON",
            ) from None

    # -- spaces ------------------------------------------------------------

    async def create_space(self, body: CreateSpace) -> SpaceRecord:
        doc = body.model_dump(mode="json", exclude_unset=True)
        doc["id"] = body.id
        return SpaceRecord.model_validate(await self._call("POST", "/spaces", body=doc))

    async def spaces(self) -> builtins.list[SpaceRecord]:
        doc = await self._call("GET", "/spaces")
        return [SpaceRecord.model_validate(r) for r in doc["spaces"]]

    async def get_space(self, space: str) -> SpaceInfo:
        doc = dict(await self._call("GET", f"/spaces/{_seg(space)}"))
        memories, applied = doc.pop("memories"), doc.pop("applied_seq")
        return SpaceInfo(SpaceRecord.model_validate(doc), int(memories), int(applied))

    async def delete_space(self, space: str) -> None:
        await self._call("DELETE", f"/spaces/{_seg(space)}")

    # -- writes --------------------------------------------------------------

    async def remember(
        self, space: str, memories: builtins.list[MemoryIn], idempotency_key: str | None
    ) -> Written:
        body = {"memories": [m.model_dump(mode="json", exclude_none=True) for m in memories]}
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        doc = await self._call(
            "POST", f"/spaces/{_seg(space)}/memories", body=body, headers=headers
        )
        return Written(ids=list(doc["ids"]), seq=int(doc["seq"]))

    async def forget(self, space: str, memory_id: str) -> int:
        doc = await self._call("DELETE", f"/spaces/{_seg(space)}/memories/{_seg(memory_id)}")
        return int(doc["seq"])

    async def forget_many(
        self, space: str, memory_ids: builtins.list[str], idempotency_key: str | None
    ) -> int:
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        doc = await self._call(
            "POST", f"/spaces/{_seg(space)}/forget", body={"ids": memory_ids}, headers=headers
        )
        return int(doc["seq"])

    async def link(self, space: str, body: LinkIn) -> int:
        doc = await self._call(
            "POST", f"/spaces/{_seg(space)}/links", body=body.model_dump(mode="json")
        )
        return int(doc["seq"])

    # -- reads ---------------------------------------------------------------

    async def recall(self, space: str, request: RecallRequest) -> RecallResponse:
        doc = await self._call(
            "POST",
            f"/spaces/{_seg(space)}/recall",
            body=request.model_dump(mode="json", exclude_none=True),
        )
        return RecallResponse.model_validate(doc)

    async def get(self, space: str, memory_id: str, include_embedding: bool) -> Memory:
        params = {"include_embedding": "true"} if include_embedding else None
        doc = await self._call(
            "GET", f"/spaces/{_seg(space)}/memories/{_seg(memory_id)}", params=params
        )
        return Memory.model_validate(doc)

    async def list(self, space: str, request: ListRequest) -> ListResponse:
        params: dict[str, Any] = {"limit": request.limit}
        if request.cursor is not None:
            params["cursor"] = request.cursor
        if request.include_embedding:
            params["include_embedding"] = "true"
        doc = await self._call("GET", f"/spaces/{_seg(space)}/memories", params=params)
        return ListResponse.model_validate(doc)

    def events(
        self, space: str, kinds: builtins.list[str], last_event_id: int | None
    ) -> EventStream:
        return SseEventStream(self, space, kinds, last_event_id)


class SseEventStream(EventStream):
    """``GET /api/v1/spaces/{space}/events`` read as server-sent events. The
    gateway opens its consumer before it answers, so once :meth:`open` returns
    every later event arrives; closing the response frees that consumer."""

    def __init__(
        self, transport: HttpTransport, space: str, kinds: list[str], after: int | None
    ) -> None:
        self._transport = transport
        self._space = space
        self._params: dict[str, str] = {}
        if kinds:
            self._params["types"] = ",".join(kinds)
        if after is not None:
            self._params["last_event_id"] = str(after)
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None

    async def _open(self) -> None:
        t = self._transport
        request = t.client.build_request(
            "GET",
            f"{API}/spaces/{_seg(self._space)}/events",
            params=self._params,
            headers={"Accept": "text/event-stream"},
            # an idle stream sends a keep-alive every 15 s: wait for it however long
            timeout=httpx.Timeout(t.timeout, read=None),
        )
        try:
            response = await t.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise t._unreachable(exc) from None
        if response.status_code >= 400:
            body = await response.aread()
            await response.aclose()
            raise problem_error(response, body)
        self._response = response
        self._lines = response.aiter_lines()

    async def _next(self) -> Event:
        assert self._lines is not None
        fields: dict[str, str] = {}
        try:
            async for line in self._lines:
                if line.startswith(":"):
                    continue  # keep-alive comment
                if line == "":
                    if "data" in fields:
                        event = parse_event(
                            int(fields.get("id") or 0), fields.get("event", ""), fields["data"]
                        )
                        if event is not None:
                            return event
                    fields = {}
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                fields[name] = fields[name] + "\n" + value if name in fields else value
        except httpx.HTTPError as exc:
            raise self._transport._unreachable(exc) from None
        raise StopAsyncIteration  # the gateway ended the stream

    async def _close(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            await response.aclose()
