"""The bench's HTTP client for latency and throughput: HTTP/1.1 keep-alive
connections on asyncio protocols, responses parsed by ``httptools`` (the C parser
uvicorn uses), nothing else per request.

httpx costs ~0.6 ms of client CPU per request on the bench's machine (measured
against a server that answers fixed bytes: httpx 0.73-0.86 ms p50, this client
0.13-0.17 ms), more than the gateway's own work on ``GET /health``: with it the
floor measured the client. The floor, HTTP recall and throughput use this client
alike (docs/benchmarks.md, "How to read it"); ingest keeps httpx (big batches, where
the client's per-request cost does not show).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


@dataclass(frozen=True)
class Reply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Reply] | None = None
        self.body: list[bytes] = []
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(exc or ConnectionError("the server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(Reply(self.parser.get_status_code(), b"".join(self.body)))


class KeepAliveClient:
    """``await client.request("POST", "/path", content=b"...")`` → :class:`Reply`.

    Concurrent requests each take an idle connection or open one; a connection goes
    back to the pool after its response (so N concurrent callers keep N connections).
    """

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        extra = {"content-type": "application/json", **(headers or {})}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in extra.items()).encode()
        self._host = f"Host: {self.host}:{self.port}\r\n".encode()
        self._idle: list[_Connection] = []

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn

    async def request(self, method: str, path: str, content: bytes | None = None) -> Reply:
        conn = await self._connection()
        assert conn.transport is not None
        conn.waiter = asyncio.get_running_loop().create_future()
        body = content or b""
        conn.transport.write(
            b"".join(
                (
                    f"{method} {path} HTTP/1.1\r\n".encode(),
                    self._host,
                    self._head,
                    f"content-length: {len(body)}\r\n\r\n".encode(),
                    body,
                )
            )
        )
        try:
            reply = await conn.waiter
        except BaseException:
            conn.reusable = False
            conn.transport.close()
            raise
        if conn.reusable:
            self._idle.append(conn)
        else:
            conn.transport.close()
        return reply

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path)

    async def post(self, path: str, content: bytes) -> Reply:
        return await self.request("POST", path, content)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()

    async def __aenter__(self) -> KeepAliveClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
