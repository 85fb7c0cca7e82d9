"""``engram mcp --space S``: one memory space as Model Context Protocol tools.

Desktop and IDE agents start it as a subprocess and speak MCP over its stdin
and stdout; remote agents reach it over streamable HTTP (``--http``). It talks
to Engram through the SDK (the gateway over HTTP by default, or NATS with
``--nats-url``), with the space's API key when keys are required. Every tool
acts on the server's space only: the space is not a tool argument, so an agent
cannot be talked into using another one. Errors are tool errors carrying the
same detail text as the HTTP API's problem+json.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from engram_client import EngramClient, EngramError, Space
from engram_contract.messages import Memory, RecallResponse

log = logging.getLogger(__name__)
T = TypeVar("T")

INSTRUCTIONS = (
    "Long-term memory of this agent (one Engram memory space). Call `recall` with a "
    "question or topic before answering anything that may depend on what you learned "
    "earlier (the user's preferences, facts, past decisions); call `remember` for each "
    "durable fact worth keeping, one fact per call, in a full sentence. `forget` erases "
    "a memory for good (use it when the user asks, or a fact is wrong)."
)


class MemoryOut(BaseModel):
    """A memory as the tools show it."""

    id: str
    content: str
    tags: list[str]
    confidence: float
    created_at: datetime
    kind: str

    @classmethod
    def of(cls, m: Memory) -> MemoryOut:
        return cls(
            id=m.id,
            content=m.content,
            tags=m.tags,
            confidence=m.confidence,
            created_at=m.created_at,
            kind=m.kind,
        )


class Recalled(MemoryOut):
    score: float = Field(description="How strongly the cue recalls it, in [0, 1].")


class RecallOut(BaseModel):
    results: list[Recalled]


class Written(BaseModel):
    id: str
    seq: int = Field(description="Its position in the space's write-ahead log.")


class Done(BaseModel):
    seq: int = Field(description="The command's position in the space's write-ahead log.")


class Recent(BaseModel):
    memories: list[MemoryOut] = Field(description="Newest first.")


async def recent(space: Space, limit: int) -> list[Memory]:
    """The ``limit`` memories stored last, newest first: pages from a cursor
    near the end of the log, widened until enough are found (a list page is in
    log order and a cursor is a log position)."""
    end = (await space.client.get_space(space.id)).applied_seq
    window = max(4 * limit, 64)
    while True:
        after = max(0, end - window)
        found: list[Memory] = []
        cursor: str | None = str(after) if after else None
        while True:
            page = await space.list(limit=1000, cursor=cursor)
            found.extend(page.memories)
            cursor = page.next_cursor
            if cursor is None:
                break
        if len(found) >= limit or after == 0:
            found.sort(key=lambda m: m.seq, reverse=True)
            return found[:limit]
        window *= 4


def _compact(answer: RecallResponse) -> str:
    if not answer.results:
        return "No memories match."
    lines = []
    for r in answer.results:
        tags = f" [{', '.join(r.memory.tags)}]" if r.memory.tags else ""
        lines.append(f"- ({r.score:.2f}) {r.memory.content}{tags} (id {r.memory.id})")
    return "\n".join(lines)


def build_server(client_factory: Callable[[], EngramClient], space_id: str) -> MCPServer:
    """The MCP server of ``space_id``; ``client_factory`` makes the SDK client
    it opens for its lifetime."""
    state: dict[str, EngramClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict[str, Any]]:
        async with client_factory() as client:
            state["client"] = client
            problem = await check_space(client, space_id)
            if problem:
                print(f"engram mcp: {problem}", file=sys.stderr, flush=True)
            yield {}

    server = MCPServer(
        name="engram",
        title=f"Engram memory space {space_id}",
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
    )

    def space() -> Space:
        return state["client"].space(space_id)

    async def call(what: Awaitable[T]) -> T:
        try:
            return await what
        except EngramError as exc:
            raise ToolError(str(exc)) from None
        except OSError as exc:
            raise ToolError(f"Engram unavailable: {exc}") from None

    readonly = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(
        description="Store one durable fact in long-term memory (a full sentence). "
        "Returns its id. Reusing an id replaces that memory.",
        annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False),
    )
    async def remember(
        content: Annotated[str, Field(min_length=1, description="The fact, in a full sentence.")],
        tags: Annotated[
            list[str] | None, Field(description="Short labels to filter by later.")
        ] = None,
        confidence: Annotated[
            float | None, Field(ge=0, le=1, description="How sure (0..1; default 1).")
        ] = None,
        id: Annotated[
            str | None, Field(description="Your own id for it (replaces an existing one).")
        ] = None,
    ) -> Written:
        done = await call(space().remember(content, id=id, tags=tags, confidence=confidence))
        return Written(id=done.id, seq=done.seq)

    @server.tool(
        description="Recall memories related to a question or topic, best first: similar "
        "memories and those associated with them.",
        annotations=readonly,
    )
    async def recall(
        query: Annotated[str, Field(min_length=1, description="A question or topic.")],
        k: Annotated[int, Field(ge=1, le=100, description="How many memories.")] = 5,
        mode: Annotated[
            Literal["spreading", "similarity", "hybrid"],
            Field(description="spreading: follow associations too; similarity: only alike."),
        ] = "spreading",
        tags: Annotated[
            list[str] | None, Field(description="Only memories with all of these tags.")
        ] = None,
        since: Annotated[
            datetime | None, Field(description="Only memories from this time on (ISO 8601).")
        ] = None,
        until: Annotated[
            datetime | None, Field(description="Only memories up to this time (ISO 8601).")
        ] = None,
    ) -> Annotated[CallToolResult, RecallOut]:
        options: dict[str, Any] = {k_: v for k_, v in (("since", since), ("until", until)) if v}
        answer = await call(space().recall(query, k=k, mode=mode, tags=tags, **options))
        out = RecallOut(
            results=[
                Recalled(**MemoryOut.of(r.memory).model_dump(), score=r.score)
                for r in answer.results
            ]
        )
        return CallToolResult(
            content=[TextContent(type="text", text=_compact(answer))],
            structured_content=out.model_dump(mode="json"),
        )

    @server.tool(
        description="Forget a memory for good (erased, not hidden). Unknown ids do nothing.",
        annotations=ToolAnnotations(destructive_hint=True, open_world_hint=False),
    )
    async def forget(id: Annotated[str, Field(description="The memory's id.")]) -> Done:
        return Done(seq=await call(space().forget(id)))

    @server.tool(
        description="Associate two memories, so that recalling one brings up the other.",
        annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False),
    )
    async def link(
        source: Annotated[str, Field(description="One memory's id.")],
        target: Annotated[str, Field(description="The other memory's id.")],
        weight: Annotated[
            float, Field(ge=0, le=1, description="How strongly (0 removes the link).")
        ] = 1.0,
    ) -> Done:
        return Done(seq=await call(space().link(source, target, weight=weight)))

    @server.tool(description="One memory by its id.", annotations=readonly)
    async def get(id: Annotated[str, Field(description="The memory's id.")]) -> MemoryOut:
        return MemoryOut.of(await call(space().get(id)))

    @server.tool(description="The memories stored last, newest first.", annotations=readonly)
    async def list_recent(
        limit: Annotated[int, Field(ge=1, le=100, description="How many.")] = 10,
    ) -> Recent:
        found = await call(recent(space(), limit))
        return Recent(memories=[MemoryOut.of(m) for m in found])

    @server.resource(
        f"engram://spaces/{space_id}/settings",
        name="settings",
        description="The space's settings (dim, embedder, links, decay, quotas).",
        mime_type="application/json",
    )
    async def settings() -> str:
        info = await call(state["client"].get_space(space_id))
        return info.record.model_dump_json(indent=2)

    @server.resource(
        f"engram://spaces/{space_id}/stats",
        name="stats",
        description="How many memories the space holds and its log position.",
        mime_type="application/json",
    )
    async def stats() -> str:
        info = await call(state["client"].get_space(space_id))
        doc = {"space": space_id, "memories": info.memories, "applied_seq": info.applied_seq}
        return json.dumps(doc)

    @server.resource(
        f"engram://spaces/{space_id}/recent",
        name="recent",
        description="The 20 memories stored last, newest first.",
        mime_type="application/json",
    )
    async def recent_resource() -> str:
        found = await call(recent(space(), 20))
        return Recent(memories=[MemoryOut.of(m) for m in found]).model_dump_json(indent=2)

    return server


async def check_space(client: EngramClient, space_id: str) -> str | None:
    """Why the space cannot be used right now (None: it can)."""
    try:
        await client.get_space(space_id)
    except EngramError as exc:
        return str(exc)
    except OSError as exc:
        return f"Engram unreachable: {exc}"
    return None


class BearerGuard:
    """ASGI middleware: the MCP HTTP endpoint answers only requests carrying
    ``Authorization: Bearer <key>`` (the same API key the server uses)."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self._want = f"Bearer {key}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            got = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(got, self._want):
                body = b'{"error": "send Authorization: Bearer <the API key>"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
