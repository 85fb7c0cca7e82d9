"""``engram space create|list|show|delete``: manage memory spaces through the
gateway (the SDK's HTTP transport), as rich tables or, with ``--json``, JSON on
stdout. Errors go to stderr.

Exit codes: see :mod:`engram_cli.errors`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engram_cli.errors import FAILED, OK, USAGE, error, report
from engram_client import (
    EngramClient,
    EngramError,
    SpaceInfo,
)
from engram_contract.messages import SpaceRecord

DEFAULT_URL = "http://127.0.0.1:7432"  # the gateway's ENGRAM_HTTP_PORT default


Command = Callable[[EngramClient, argparse.Namespace, Console, Console], Awaitable[int]]


def gateway_url(args: argparse.Namespace) -> str:
    """``--url``, else ``ENGRAM_URL``, else the local gateway."""
    return str(getattr(args, "url", None) or os.environ.get("ENGRAM_URL") or DEFAULT_URL)


def gateway_key(args: argparse.Namespace) -> str | None:
    """``--api-key``, else ``ENGRAM_API_KEY`` (None: send none)."""
    key = getattr(args, "api_key", None) or os.environ.get("ENGRAM_API_KEY")
    return str(key) if key else None


def add_key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="the API key to send (default: ENGRAM_API_KEY; needed when the gateway requires keys)",
    )


def common_options() -> argparse.ArgumentParser:
    """Options every ``space``/``memory`` subcommand takes (an argparse parent)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--url",
        default=None,
        help=f"the gateway's base URL (default: ENGRAM_URL, else {DEFAULT_URL})",
    )
    p.add_argument("--json", action="store_true", help="print JSON on stdout (for scripts)")
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the gateway"
    )
    add_key_option(p)
    return p


def print_json(out: Console, doc: Any) -> None:
    out.out(json.dumps(doc, indent=2, ensure_ascii=False), highlight=False)


def run_with_client(
    command: Command, args: argparse.Namespace, out: Console | None, err: Console | None
) -> int:
    """Run ``command`` with an HTTP client of the gateway; SDK errors become
    messages on stderr and exit codes."""
    out = out or Console()
    err = err or Console(stderr=True)

    async def go() -> int:
        async with EngramClient.http(
            gateway_url(args), timeout=args.timeout, api_key=gateway_key(args)
        ) as client:
            return await command(client, args, out, err)

    try:
        return asyncio.run(go())
    except EngramError as exc:
        return report(err, exc)
    except KeyboardInterrupt:
        error(err, "interrupted")
        return 130


def wide(out: Console, table: Table) -> None:
    """Print a table; when piped, as wide as it needs (rich would assume 80
    columns and cut ids short), so scripts can grep whole cells."""
    if out.is_terminal:
        out.print(table)
        return
    from rich.measure import Measurement

    width = out.width
    needed = Measurement.get(out, out.options.update_width(1000), table).maximum
    out.width = max(needed, width)
    try:
        out.print(table)
    finally:
        out.width = width


def _spaces_table(records: list[SpaceRecord], counts: dict[str, SpaceInfo] | None = None) -> Table:
    table = Table(title="Engram spaces", title_justify="left")
    for name in ("space", "status", "dim", "metric", "embedder", "created"):
        table.add_column(name, no_wrap=True)
    if counts is not None:
        table.add_column("memories", justify="right", no_wrap=True)
        table.add_column("applied seq", justify="right", no_wrap=True)
    for r in records:
        row = [
            r.id,
            r.status,
            str(r.dim),
            r.metric,
            r.embedder,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        ]
        if counts is not None:
            info = counts[r.id]
            row += [f"{info.memories:,}", f"{info.applied_seq:,}"]
        table.add_row(*row)
    return table


# -- commands ------------------------------------------------------------------


async def _create(client: EngramClient, args: argparse.Namespace, out: Console, _: Console) -> int:
    settings: dict[str, Any] = {}
    if args.dim is not None:
        settings["dim"] = args.dim
    if args.metric is not None:
        settings["metric"] = args.metric
    if args.embedder is not None:
        settings["embedder"] = args.embedder
    rec = await client.create_space(args.space_id, **settings)
    if args.json:
        print_json(out, rec.model_dump(mode="json"))
    else:
        out.print(
            f"space [bold]{escape(rec.id)}[/]: dim {rec.dim}, metric {rec.metric}, "
            f"embedder {escape(rec.embedder)}",
            highlight=False,
        )
    return OK


async def _list(client: EngramClient, args: argparse.Namespace, out: Console, _: Console) -> int:
    records = await client.spaces()
    if args.json:
        print_json(out, {"spaces": [r.model_dump(mode="json") for r in records]})
    elif records:
        wide(out, _spaces_table(records))
    else:
        out.print("no spaces")
    return OK


async def _show(client: EngramClient, args: argparse.Namespace, out: Console, _: Console) -> int:
    info = await client.get_space(args.space_id)
    if args.json:
        print_json(
            out,
            {
                **info.record.model_dump(mode="json"),
                "memories": info.memories,
                "applied_seq": info.applied_seq,
            },
        )
    else:
        wide(out, _spaces_table([info.record], {info.id: info}))
        r = info.record
        out.print(
            f"links: {escape(repr(r.links))}\ndecay: {escape(repr(r.decay))}\n"
            f"consolidation: {escape(repr(r.consolidation))}",
            highlight=False,
            soft_wrap=True,
        )
    return OK


async def _delete(client: EngramClient, args: argparse.Namespace, out: Console, _: Console) -> int:
    await client.delete_space(args.space_id)
    if args.json:
        print_json(out, {"id": args.space_id, "status": "deleted"})
    else:
        out.print(f"deleted space [bold]{escape(args.space_id)}[/]", highlight=False)
    return OK


_COMMANDS: dict[str, Command] = {
    "create": _create,
    "list": _list,
    "show": _show,
    "delete": _delete,
}


def run_space(
    args: argparse.Namespace, out: Console | None = None, err: Console | None = None
) -> int:
    """The ``engram space …`` commands; ``out``/``err`` default to stdout/stderr."""
    if args.space_command == "delete" and not args.yes:
        if not sys.stdin.isatty():
            # a script, a pipe, an agent: nobody can be asked, so nothing is deleted
            error(
                err or Console(stderr=True),
                f"not deleting space {args.space_id!r} without --yes (stdin is not a "
                "terminal, so nobody can be asked)",
            )
            return USAGE
        answer = input(f"Delete space {args.space_id!r} and every memory in it? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            (err or Console(stderr=True)).print("not deleted")
            return FAILED
    return run_with_client(_COMMANDS[args.space_command], args, out, err)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``space`` to the ``engram`` subcommands (``sub`` from ``add_subparsers``)."""
    common = common_options()
    p: argparse.ArgumentParser = sub.add_parser(
        "space",
        help="create, list, show and delete memory spaces (through the gateway)",
        description="Manage memory spaces through the gateway. Exit codes: 0 done, 1 not "
        "found or conflict, 2 usage or invalid input, 3 gateway unreachable or unavailable.",
    )
    verbs = p.add_subparsers(dest="space_command", required=True, metavar="COMMAND")
    create = verbs.add_parser(
        "create",
        parents=[common],
        help="create a space (or get it, if it exists with these settings)",
    )
    create.add_argument("space_id", metavar="SPACE", help="3-64 chars of a-z, 0-9, _ or -")
    create.add_argument("--dim", type=int, help="vector dimensions (default: the gateway's)")
    create.add_argument("--metric", choices=["cos", "ip", "l2sq"], help="default: cos")
    create.add_argument("--embedder", help="the space's text embedder (default: the gateway's)")
    verbs.add_parser("list", parents=[common], help="list the spaces")
    show = verbs.add_parser(
        "show", parents=[common], help="a space's settings, memory count and applied seq"
    )
    show.add_argument("space_id", metavar="SPACE")
    delete = verbs.add_parser(
        "delete", parents=[common], help="delete a space and everything in it"
    )
    delete.add_argument("space_id", metavar="SPACE")
    delete.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="do not ask; needed when stdin is not a terminal (scripts)",
    )
    return p
