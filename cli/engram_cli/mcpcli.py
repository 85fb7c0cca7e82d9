"""``engram mcp``'s command line (kept apart from :mod:`engram_cli.mcpserver`,
which imports the MCP SDK, so that other commands do not pay for it)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "mcp",
        help="serve one memory space as MCP tools (stdio, or --http)",
        description=(
            "Serve the memory space --space as Model Context Protocol tools: remember, "
            "recall, forget, link, get, list_recent (and its settings, stats and recent "
            "memories as resources). Over stdio by default (what desktop and IDE agents "
            "start); --http serves streamable HTTP at http://HOST:PORT/mcp. Talks to the "
            "gateway (--url, ENGRAM_URL) or to NATS (--nats-url) with --api-key / "
            "ENGRAM_API_KEY; over --http with a key, clients must send the same key as "
            "Authorization: Bearer. See docs/mcp.md."
        ),
    )
    p.add_argument("--space", help="the memory space (default: ENGRAM_MEMORY_SPACE)")
    p.add_argument("--url", help="the gateway (default: ENGRAM_URL, else http://127.0.0.1:7432)")
    p.add_argument("--nats-url", help="talk to NATS directly instead of the gateway")
    p.add_argument("--api-key", metavar="KEY", help="the space's API key (default: ENGRAM_API_KEY)")
    p.add_argument("--http", action="store_true", help="serve streamable HTTP, not stdio")
    p.add_argument("--host", default="127.0.0.1", help="--http: address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7435, help="--http: port (default 7435)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="per Engram call")
    return p


def run_mcp(args: argparse.Namespace) -> int:
    from engram_cli.mcpserver import BearerGuard, build_server
    from engram_client import EngramClient
    from engram_contract.ids import space_id_problem

    space_id = args.space or os.environ.get("ENGRAM_MEMORY_SPACE")
    if not space_id:
        print("engram mcp: pass --space (or set ENGRAM_MEMORY_SPACE)", file=sys.stderr)
        return 2
    if (problem := space_id_problem(space_id)) is not None:
        print(f"engram mcp: --space: {problem}", file=sys.stderr)
        return 2
    key = args.api_key or os.environ.get("ENGRAM_API_KEY") or None
    url = args.url or os.environ.get("ENGRAM_URL") or "http://127.0.0.1:7432"

    def client() -> EngramClient:
        if args.nats_url:
            return EngramClient.nats(
                args.nats_url, api_key=key, timeout=args.timeout, auto_create_spaces=False
            )
        return EngramClient.http(url, api_key=key, timeout=args.timeout)

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    server = build_server(client, space_id)
    if not args.http:
        server.run("stdio")
        return 0
    import anyio
    import uvicorn

    app: Any = server.streamable_http_app(host=args.host)
    if key:
        app = BearerGuard(app, key)
    print(f"engram mcp: space {space_id} at http://{args.host}:{args.port}/mcp", file=sys.stderr)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    anyio.run(uvicorn.Server(config).serve)
    return 0
