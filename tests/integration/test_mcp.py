"""`engram mcp`: one memory space as MCP tools, tried with the MCP SDK's own
client, as an agent would: over stdio against `engram mcp` as a subprocess and
over streamable HTTP, against a real gateway, worker and nats-server."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from engram_cli.devstack import free_port
from tests.helpers import gateway_settings, running_gateway

pytestmark = pytest.mark.usefixtures("worker")
ADMIN_KEY = "mcp-admin-key-" + "x" * 20


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}


def stdio(space: str, url: str, *extra: str) -> Client:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "engram_cli", "mcp", "--space", space, "--url", url, *extra],
        env=_env(),
    )
    return Client(params, raise_exceptions=False)


def text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "text", None))


@pytest.fixture
async def gateway(nats_server: Any) -> AsyncIterator[str]:
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        yield str(client.base_url)


async def _space(url: str, headers: dict[str, str] | None = None) -> str:
    space = f"mcp-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=url, headers=headers) as c:
        r = await c.post("/api/v1/spaces", json={"id": space})
        assert r.status_code == 201, r.text
    return space


async def test_an_agent_remembers_recalls_and_forgets_over_stdio(gateway: str) -> None:
    space, other = await _space(gateway), await _space(gateway)
    async with stdio(space, gateway) as mcp, stdio(other, gateway) as elsewhere:
        tools = {t.name: t for t in (await mcp.list_tools()).tools}
        assert set(tools) == {"remember", "recall", "forget", "link", "get", "list_recent"}
        # the space is not an argument: an agent cannot be talked into another one
        for tool in tools.values():
            assert "space" not in str(tool.input_schema.get("properties", {})), tool.name
        assert tools["recall"].description and tools["recall"].output_schema

        stored = await mcp.call_tool(
            "remember", {"content": "The user has a cat called Miso", "tags": ["pets"]}
        )
        assert not stored.is_error, text(stored)
        pet = stored.structured_content["id"]
        await mcp.call_tool("remember", {"content": "The user works night shifts", "id": "job"})
        await mcp.call_tool("link", {"source": pet, "target": "job", "weight": 0.8})

        found = await mcp.call_tool("recall", {"query": "cat called Miso", "k": 2})
        assert not found.is_error, text(found)
        assert found.structured_content["results"][0]["id"] == pet
        assert "The user has a cat called Miso" in text(found)  # compact text for the model
        recent = await mcp.call_tool("list_recent", {"limit": 5})
        assert [m["id"] for m in recent.structured_content["memories"]] == ["job", pet]
        got = await mcp.call_tool("get", {"id": pet})
        assert got.structured_content["content"] == "The user has a cat called Miso"

        # the other space's server sees none of it
        theirs = await elsewhere.call_tool("recall", {"query": "cat called Miso", "k": 5})
        assert theirs.structured_content["results"] == []
        assert (await elsewhere.call_tool("get", {"id": pet})).is_error

        gone = await mcp.call_tool("forget", {"id": pet})
        assert not gone.is_error
        missing = await mcp.call_tool("get", {"id": pet})
        assert missing.is_error and "does not exist" in text(missing)
        after = await mcp.call_tool("recall", {"query": "cat called Miso", "k": 5})
        assert pet not in [r["id"] for r in after.structured_content["results"]]

        stats = await mcp.read_resource(f"engram://spaces/{space}/stats")
        assert '"memories": 1' in stats.contents[0].text  # type: ignore[union-attr]

        # bad arguments are tool errors naming the field; the server stays up
        for args in ({"query": "", "k": 3}, {"query": "x", "k": 500}, {"k": 3}):
            bad = await mcp.call_tool("recall", args)
            assert bad.is_error, args
        bad = await mcp.call_tool("remember", {"content": "x", "confidence": 3})
        assert bad.is_error and "confidence" in text(bad)
        # an error of Engram's: the detail the HTTP API gives
        bad = await mcp.call_tool("link", {"source": "nope", "target": "nada"})
        assert bad.is_error and "nope" in text(bad), text(bad)
        assert not (await mcp.call_tool("list_recent", {"limit": 1})).is_error


@pytest.mark.slow  # two more MCP servers to start (~1.5 s of imports each)
async def test_a_missing_space_or_engram_unreachable_is_said_at_start_and_on_each_call(
    gateway: str, tmp_path: Path
) -> None:
    absent = f"mcp-absent-{uuid.uuid4().hex[:6]}"
    nobody = f"http://127.0.0.1:{free_port()}"
    for url, said in ((gateway, "does not exist"), (nobody, "unreachable")):
        log = tmp_path / "stderr.txt"
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "engram_cli", "mcp", "--space", absent, "--url", url, "--timeout", "2"],
            env=_env(),
        )
        with log.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as mcp:
                answer = await mcp.call_tool("recall", {"query": "anything"})
                assert answer.is_error and said in text(answer).lower(), text(answer)
        start = log.read_text()
        assert f"memory space {absent!r}" in start or "unreachable" in start, start
        assert said in start.lower(), start


@pytest.mark.slow
async def test_over_http_with_keys_a_scoped_key_serves_only_its_space(nats_server: Any) -> None:
    settings = gateway_settings(nats_server.url, auth="required", admin_key=ADMIN_KEY)
    async with running_gateway(settings) as gw:
        url = str(gw.base_url)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        space, other = await _space(url, admin), await _space(url, admin)
        r = await gw.post("/api/v1/keys", json={"spaces": [space], "role": "write"}, headers=admin)
        key = r.json()["key"]
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engram_cli", "mcp", "--space", space, "--url", url,
            "--api-key", key, "--http", "--port", str(port),
            env=_env(), stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            endpoint = f"http://127.0.0.1:{port}/mcp"
            for _ in range(200):
                try:
                    async with httpx.AsyncClient() as probe:
                        refused = await probe.post(endpoint, json={})
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert refused.status_code == 401  # no key, no tools
            import httpx2

            keyed = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
            from mcp.client.streamable_http import streamable_http_client

            async with keyed, Client(streamable_http_client(endpoint, http_client=keyed)) as mcp:
                stored = await mcp.call_tool("remember", {"content": "prefers tea"})
                assert not stored.is_error, text(stored)
                found = await mcp.call_tool("recall", {"query": "prefers tea", "k": 1})
                assert found.structured_content["results"][0]["content"] == "prefers tea"
            # the same key on another space's server: every call is refused
            async with stdio(other, url, "--api-key", key) as theirs:
                denied = await theirs.call_tool("list_recent", {})
                assert denied.is_error and "Forbidden" in text(denied), text(denied)
        finally:
            proc.terminate()
            await proc.wait()
