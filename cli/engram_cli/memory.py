"""``engram memory remember|recall|get|list|forget|link``: one space's memories,
through the gateway (the SDK's HTTP transport).

The space: ``--space``, else ``ENGRAM_MEMORY_SPACE``, else the configured
default space ``ENGRAM_DEFAULT_SPACE`` (the setting the gateway creates at start);
with none of them the command exits 2. Exit codes as ``engram space`` (see
:mod:`engram_cli.space`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engram_cli.errors import OK, USAGE, error
from engram_cli.space import common_options, print_json, run_with_client, wide
from engram_client import EngramClient, InvalidInput, Space
from engram_client.errors import field_error, invalid_input
from engram_contract.ids import MEMORY_ID_EXPECTED, MEMORY_ID_RE, space_id_problem
from engram_contract.messages import MAX_BATCH, Memory, MemoryIn

MISSING_SPACE = (
    "no memory space: pass --space, set ENGRAM_MEMORY_SPACE, "
    "or configure a default space (ENGRAM_DEFAULT_SPACE)"
)


def resolve_space(flag: str | None, env: dict[str, str] | None = None) -> str | None:
    """``--space`` > ``ENGRAM_MEMORY_SPACE`` > ``ENGRAM_DEFAULT_SPACE``; ``None``
    when none is set (empty values count as unset)."""
    env = dict(os.environ) if env is None else env
    for value in (flag, env.get("ENGRAM_MEMORY_SPACE"), env.get("ENGRAM_DEFAULT_SPACE")):
        if value and value.strip():
            return value.strip()
    return None


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _memories_table(memories: list[Memory], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("content")
    table.add_column("confidence", justify="right", no_wrap=True)
    table.add_column("tags")
    table.add_column("occurred", no_wrap=True)
    for m in memories:
        table.add_row(
            m.id,
            _short(m.content),
            f"{m.confidence:.2f}",
            ", ".join(m.tags),
            m.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def _metadata(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(400, "Invalid input", f"--meta {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


# -- remember ------------------------------------------------------------------


def read_memories(lines: list[str], fmt: str, defaults: dict[str, Any]) -> list[MemoryIn]:
    """The memories of a file: NDJSON (one ``MemoryIn`` object a line) or text
    (one memory a line); ``auto`` looks at the first non-blank line. ``defaults``
    (tags, metadata, confidence from the command line) fill what a line leaves
    out. Blank lines are skipped; a bad line raises naming its number."""
    numbered = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    if fmt == "auto":
        fmt = "ndjson" if numbered and numbered[0][1].startswith("{") else "text"
    memories = []
    for n, line in numbered:
        try:
            if fmt == "ndjson":
                doc = json.loads(line)
                if not isinstance(doc, dict):
                    raise InvalidInput(400, "Invalid input", f"line {n}: expected a JSON object")
                memories.append(MemoryIn.model_validate({**defaults, **doc}))
            else:
                memories.append(MemoryIn.model_validate({**defaults, "content": line}))
        except json.JSONDecodeError as exc:
            raise InvalidInput(400, "Invalid input", f"line {n}: not JSON: {exc}") from None
        except ValidationError as exc:
            raise invalid_input(exc, f"line {n}") from None
    return memories


async def _remember_file(space: Space, args: argparse.Namespace, out: Console, err: Console) -> int:
    defaults: dict[str, Any] = {}
    if args.tag:
        defaults["tags"] = args.tag
    if args.meta:
        defaults["metadata"] = _metadata(args.meta)
    if args.confidence is not None:
        defaults["confidence"] = args.confidence
    if args.file == "-":
        lines = (await asyncio.to_thread(sys.stdin.read)).splitlines()
    else:
        try:
            text = await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8")
            lines = text.splitlines()
        except OSError as exc:
            error(err, f"cannot read {args.file}: {exc.strerror or exc}")
            return USAGE
    memories = read_memories(lines, args.format, defaults)
    if not memories:
        error(err, f"{args.file}: no memories in it")
        return USAGE
    ids: list[str] = []
    seq = 0
    started = time.monotonic()
    with Progress(
        TextColumn("remembering"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=not args.json and err.is_terminal,
    ) as progress:
        task = progress.add_task("remember", total=len(memories))
        for start in range(0, len(memories), args.batch):
            written = await space.remember_many(memories[start : start + args.batch])
            ids.extend(written.ids)
            seq = max(seq, written.seq)
            progress.advance(task, len(written.ids))
    elapsed = time.monotonic() - started
    if args.json:
        print_json(out, {"ids": ids, "seq": seq, "count": len(ids)})
    else:
        rate = len(ids) / elapsed if elapsed > 0 else float(len(ids))
        out.print(
            f"remembered {len(ids):,} memories in {escape(space.id)} "
            f"(last seq {seq}) in {elapsed:.1f} s, {rate:,.0f}/s",
            highlight=False,
        )
    return OK


async def _remember(
    client: EngramClient, args: argparse.Namespace, out: Console, err: Console
) -> int:
    space = client.space(args.space)
    if args.file is not None:
        if args.content is not None or args.id is not None:
            error(err, "give CONTENT (with --id) or --file, not both")
            return USAGE
        return await _remember_file(space, args, out, err)
    if args.content is None:
        error(err, "give the memory's CONTENT, or --file with one memory a line")
        return USAGE
    written = await space.remember(
        args.content,
        id=args.id,
        confidence=args.confidence,
        tags=args.tag,
        metadata=_metadata(args.meta) or None,
    )
    if args.json:
        print_json(out, {"ids": written.ids, "seq": written.seq})
    else:
        out.print(
            f"remembered [bold]{escape(written.id)}[/] in {escape(space.id)} (seq {written.seq})",
            highlight=False,
        )
    return OK


# -- reads ---------------------------------------------------------------------


async def _recall(client: EngramClient, args: argparse.Namespace, out: Console, _: Console) -> int:
    answer = await client.space(args.space).recall(
        args.query,
        k=args.k,
        mode=args.mode,
        tags=args.tag,
        trace=args.trace,
        reinforce=not args.no_reinforce,
    )
    if args.json:
        print_json(out, answer.model_dump(mode="json"))
        return OK
    if not answer.results:
        out.print(f"nothing recalled from {escape(answer.space)}", highlight=False)
        return OK
    table = Table(title=f"Recalled from {answer.space}", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("sim", justify="right", no_wrap=True)
    table.add_column("hops", justify="right", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("content")
    table.add_column("tags")
    for i, r in enumerate(answer.results, 1):
        table.add_row(
            str(i),
            f"{r.score:.3f}",
            f"{r.similarity:.3f}",
            str(r.hops),
            r.memory.id,
            _short(r.memory.content),
            ", ".join(r.memory.tags),
        )
    wide(out, table)
    if args.trace:
        for r in answer.results:
            if r.trace and len(r.trace) > 1:
                path = " → ".join(
                    s.memory_id if s.kind is None else f"({s.kind} {s.weight:.2f}) {s.memory_id}"
                    for s in r.trace
                )
                out.print(f"  {escape(r.memory.id)}: {escape(path)}", highlight=False)
    return OK


async def _get(client: EngramClient, args: argparse.Namespace, out: Console, _: Console) -> int:
    memory = await client.space(args.space).get(args.memory_id, include_embedding=args.embedding)
    if args.json:
        print_json(out, memory.model_dump(mode="json"))
        return OK
    table = Table(show_header=False, title=f"{args.space}/{memory.id}", title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    for name, value in memory.model_dump(mode="json").items():
        if name == "embedding" and value is not None:
            value = f"[{len(value)} values] " + ", ".join(f"{v:.4f}" for v in value[:4]) + ", …"
        elif isinstance(value, list | dict):
            value = json.dumps(value, ensure_ascii=False)
        table.add_row(name, escape("–" if value is None else str(value)))
    out.print(table)
    return OK


async def _list(client: EngramClient, args: argparse.Namespace, out: Console, _: Console) -> int:
    space = client.space(args.space)
    if args.all:
        memories = [m async for m in space.iter_memories(page_size=args.limit)]
        cursor = None
    else:
        page = await space.list(limit=args.limit, cursor=args.cursor)
        memories, cursor = page.memories, page.next_cursor
    if args.json:
        print_json(
            out,
            {
                "space": space.id,
                "memories": [m.model_dump(mode="json") for m in memories],
                "next_cursor": cursor,
            },
        )
        return OK
    if memories:
        wide(out, _memories_table(memories, f"Memories of {space.id}"))
    else:
        out.print(f"no memories in {escape(space.id)}", highlight=False)
    if cursor is not None:
        out.print(f"more: --cursor {escape(cursor)}", highlight=False)
    return OK


# -- writes --------------------------------------------------------------------


def read_ids(lines: list[str]) -> list[str]:
    """The memory ids of a file, one a line (blank lines skipped); a bad id raises
    :class:`InvalidInput` naming its line."""
    ids = []
    for n, line in enumerate(lines, 1):
        memory_id = line.strip()
        if not memory_id:
            continue
        if not MEMORY_ID_RE.fullmatch(memory_id):
            raise field_error(f"line {n}", f"{memory_id!r} is invalid: {MEMORY_ID_EXPECTED}")
        ids.append(memory_id)
    return ids


async def _forget(
    client: EngramClient, args: argparse.Namespace, out: Console, err: Console
) -> int:
    ids: list[str] = list(args.memory_ids)
    if args.file is not None:
        try:
            if args.file == "-":
                text = await asyncio.to_thread(sys.stdin.read)
            else:
                text = await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8")
        except OSError as exc:
            error(err, f"cannot read {args.file}: {exc.strerror or exc}")
            return USAGE
        ids += read_ids(text.splitlines())
        if not ids:
            error(err, f"{args.file}: no memory ids in it")
            return USAGE
    if not ids:
        error(err, "give the memory IDs to forget, or --file with one id a line")
        return USAGE
    space = client.space(args.space)
    seq = 0
    with Progress(
        TextColumn("forgetting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=not args.json and err.is_terminal,
        disable=len(ids) <= MAX_BATCH,  # one request: nothing to show
    ) as progress:
        task = progress.add_task("forget", total=len(ids))
        for start in range(0, len(ids), MAX_BATCH):
            chunk = ids[start : start + MAX_BATCH]
            seq = max(seq, await space.forget_many(chunk))
            progress.advance(task, len(chunk))
    if args.json:
        print_json(out, {"seq": seq, "count": len(ids)})
    elif len(ids) == 1:
        out.print(f"forgot {escape(ids[0])} in {escape(space.id)} (seq {seq})", highlight=False)
    else:
        out.print(
            f"forgot {len(ids):,} memories in {escape(space.id)} (last seq {seq})",
            highlight=False,
        )
    return OK


async def _link(client: EngramClient, args: argparse.Namespace, out: Console, _: Console) -> int:
    seq = await client.space(args.space).link(
        args.source, args.target, weight=args.weight, kind=args.kind
    )
    if args.json:
        print_json(out, {"seq": seq})
    else:
        out.print(
            f"linked {escape(args.source)} ↔ {escape(args.target)} "
            f"({escape(args.kind)}, weight {args.weight:g}) in {escape(args.space)} (seq {seq})",
            highlight=False,
        )
    return OK


_COMMANDS = {
    "remember": _remember,
    "recall": _recall,
    "get": _get,
    "list": _list,
    "forget": _forget,
    "link": _link,
}


def run_memory(
    args: argparse.Namespace, out: Console | None = None, err: Console | None = None
) -> int:
    """The ``engram memory …`` commands; ``out``/``err`` default to stdout/stderr."""
    err = err or Console(stderr=True)
    space = resolve_space(args.space)
    if space is None:
        error(err, MISSING_SPACE)
        return USAGE
    problem = space_id_problem(space)
    if problem is not None:
        error(err, problem)
        return USAGE
    args.space = space
    return run_with_client(_COMMANDS[args.memory_command], args, out, err)


def _batch_size(raw: str) -> int:
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"expected 1-{MAX_BATCH}, got {raw!r}")
    return n


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``memory`` to the ``engram`` subcommands (``sub`` from ``add_subparsers``)."""
    common = common_options()
    common.add_argument(
        "--space",
        "-s",
        metavar="S",
        help="the memory space (default: ENGRAM_MEMORY_SPACE, else ENGRAM_DEFAULT_SPACE)",
    )
    p: argparse.ArgumentParser = sub.add_parser(
        "memory",
        help="remember, recall, get, list, forget and link memories (through the gateway)",
        description="Work with one space's memories through the gateway. The space: --space, "
        "else ENGRAM_MEMORY_SPACE, else ENGRAM_DEFAULT_SPACE. Exit codes: 0 done, 1 not found "
        "or conflict, 2 usage or invalid input (or no space), 3 gateway unreachable or "
        "unavailable.",
    )
    verbs = p.add_subparsers(dest="memory_command", required=True, metavar="COMMAND")

    remember = verbs.add_parser(
        "remember",
        parents=[common],
        help="store a memory, or many from a file (--file)",
        description="Store CONTENT as one memory, or every line of --file: NDJSON (one "
        "memory object a line, the fields of POST …/memories) or plain text (one memory a "
        "line). --tag, --meta and --confidence apply to each (NDJSON lines may override).",
    )
    remember.add_argument("content", nargs="?", metavar="CONTENT", help="the memory's text")
    remember.add_argument("--id", help="the memory's id (an existing one is replaced)")
    remember.add_argument("--confidence", type=float, metavar="C", help="0..1 (default 0.7)")
    remember.add_argument("--tag", "-t", action="append", metavar="TAG", help="repeatable")
    remember.add_argument("--meta", action="append", metavar="KEY=VALUE", help="repeatable")
    remember.add_argument("--file", "-f", metavar="PATH", help="bulk load; '-' reads stdin")
    remember.add_argument(
        "--format", choices=["auto", "ndjson", "text"], default="auto", help="of --file"
    )
    remember.add_argument(
        "--batch",
        type=_batch_size,
        default=500,
        metavar="N",
        help=f"memories per request with --file (1-{MAX_BATCH}, default 500)",
    )

    recall = verbs.add_parser("recall", parents=[common], help="recall memories by a text cue")
    recall.add_argument("query", metavar="QUERY")
    recall.add_argument("-k", type=int, default=10, help="how many (default 10)")
    recall.add_argument(
        "--mode", choices=["similarity", "spreading", "hybrid"], default="spreading"
    )
    recall.add_argument(
        "--tag", "-t", action="append", metavar="TAG", help="only with all of these"
    )
    recall.add_argument("--trace", action="store_true", help="show each result's activation path")
    recall.add_argument(
        "--no-reinforce", action="store_true", help="do not count this recall (probes)"
    )

    get = verbs.add_parser("get", parents=[common], help="one memory")
    get.add_argument("memory_id", metavar="ID")
    get.add_argument("--embedding", action="store_true", help="include the vector")

    lst = verbs.add_parser("list", parents=[common], help="page through the memories")
    lst.add_argument("--limit", type=int, default=100, help="page size (1-1000, default 100)")
    lst.add_argument("--cursor", help="next_cursor of the previous page")
    lst.add_argument("--all", action="store_true", help="every page")

    forget = verbs.add_parser(
        "forget",
        parents=[common],
        help="forget memories (erased)",
        description="Forget each ID (and each id of --file, one a line), up to 1000 per "
        "request. Unknown ids are no-ops; the space must exist.",
    )
    forget.add_argument("memory_ids", nargs="*", metavar="ID", help="the memories to forget")
    forget.add_argument("--file", "-f", metavar="PATH", help="one id a line; '-' reads stdin")

    link = verbs.add_parser("link", parents=[common], help="associate two memories")
    link.add_argument("source", metavar="A")
    link.add_argument("target", metavar="B")
    link.add_argument("--weight", type=float, default=1.0, help="0..1 (0 unlinks; default 1)")
    link.add_argument("--kind", default="related", help="the link's kind (default related)")
    return p
