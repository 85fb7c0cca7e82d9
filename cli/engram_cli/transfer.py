"""``engram export``, ``engram import`` and ``engram migrate``: move a space's
memories through the gateway (``GET …/export``, ``POST …/import``, NDJSON; the
format is in docs/api.md#export-and-import).

``migrate --from A --to B`` exports A into a temporary file, imports it into B
(created with A's settings when it does not exist; ``--embedder NAME [--dim N]``:
with that embedder instead, every memory's text embedded again by it), and with
``--move`` then
forgets in A every memory it copied (``POST …/forget``, 1000 ids a request) —
only once B's import has been acknowledged, so a failure at any step leaves A
holding everything not yet in B.

Exit codes: ``0`` done; ``1`` the gateway refused (a problem: unknown space, bad
line, dim mismatch…) or the export was incomplete; ``2`` the gateway could not be
reached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from engram_cli.space import add_key_option, gateway_key
from engram_client.http_transport import key_headers, problem_error
from engram_contract.embedders import SEMANTIC_THRESHOLDS
from engram_contract.messages import MAX_BATCH
from engram_contract.settings import GatewaySettings

OK, REFUSED, UNREACHABLE = 0, 1, 2
#: ``engram`` talks to the gateway's default address unless told otherwise
DEFAULT_URL = (
    f"http://{GatewaySettings.model_fields['http_host'].default}:"
    f"{GatewaySettings.model_fields['http_port'].default}"
)
CHUNK = 256 * 1024


class TransferFailed(Exception):
    """A step failed; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = REFUSED) -> None:
        super().__init__(message)
        self.code = code


def base_url(args: argparse.Namespace) -> str:
    url: str = args.url or os.environ.get("ENGRAM_URL") or DEFAULT_URL
    return url.rstrip("/")


def _problem(r: httpx.Response, what: str) -> TransferFailed:
    exc = problem_error(r, r.content)  # the typed error, as the SDK reads it
    code = UNREACHABLE if r.status_code >= 500 else REFUSED
    return TransferFailed(f"{what}: the gateway answered {r.status_code}: {exc}", code)


def _unreachable(url: str, exc: Exception) -> TransferFailed:
    return TransferFailed(f"cannot reach the gateway at {url}: {exc or type(exc).__name__}", 2)


def _progress(console: Console, *, bytes_: bool = False) -> Progress:
    counter = DownloadColumn() if bytes_ else MofNCompleteColumn()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        counter,
        TimeElapsedColumn(),
        console=console,
    )


def memory_count(client: httpx.Client, space: str) -> int | None:
    """How many memories ``space`` holds (for the progress bar), or ``None``."""
    r = client.get(f"/api/v1/spaces/{space}")
    if r.status_code != 200:
        return None
    count = r.json().get("memories")
    return int(count) if isinstance(count, int) else None


def export_to(
    client: httpx.Client, space: str, tags: list[str], out: IO[bytes], console: Console
) -> dict[str, Any]:
    """Stream ``space``'s export into ``out``; returns ``{memories, links, ids, bytes}``.
    Raises :class:`TransferFailed` when the gateway refuses or the export breaks off."""
    total = memory_count(client, space)
    ids: list[str] = []
    size = 0
    end: dict[str, Any] | None = None
    with (
        _progress(console) as progress,
        client.stream(
            "GET", f"/api/v1/spaces/{space}/export", params=[("tag", t) for t in tags]
        ) as r,
    ):
        if r.status_code != 200:
            r.read()
            raise _problem(r, f"export of {space!r}")
        task = progress.add_task(f"export {space}", total=total)
        for line in r.iter_lines():
            if not line.strip():
                continue
            data = line.encode() + b"\n"
            out.write(data)
            size += len(data)
            doc = json.loads(line)
            if "engram_export" in doc:
                continue
            if "end" in doc and "id" not in doc:
                end = doc["end"]
            elif "error" in doc and "id" not in doc:
                raise TransferFailed(
                    f"export of {space!r} broke off: {doc['error'].get('detail', doc['error'])}"
                )
            else:
                ids.append(doc["id"])
                progress.advance(task)
        progress.update(task, total=len(ids), completed=len(ids))
    if end is None:
        raise TransferFailed(f"export of {space!r} ended without its end line (cut off?)")
    return {"memories": end["memories"], "links": end["links"], "ids": ids, "bytes": size}


#: ``links.semantic_threshold`` of a space whose embedder has none of its own
DEFAULT_SEMANTIC_THRESHOLD = 0.5


def for_embedder(src: Path, dst: Path, embedder: str, dim: int | None) -> int:
    """Rewrite the export at ``src`` into ``dst`` for a space that embeds with
    ``embedder`` (``dim``: default the source's): the header names them, memory
    lines lose their vectors (the importing gateway embeds their text), and a
    semantic threshold that was the source embedder's default becomes the new
    one's. Returns how many memories will be embedded."""
    count = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        for raw in fin:
            if not raw.strip():
                continue
            doc = json.loads(raw)
            if "engram_export" in doc:
                settings = doc["settings"]
                before = settings.get("embedder")
                settings["embedder"] = embedder
                settings["dim"] = dim or settings["dim"]
                links = settings.get("links") or {}
                old = SEMANTIC_THRESHOLDS.get(before, DEFAULT_SEMANTIC_THRESHOLD)
                if links.get("semantic_threshold", old) == old:
                    links["semantic_threshold"] = SEMANTIC_THRESHOLDS.get(
                        embedder, DEFAULT_SEMANTIC_THRESHOLD
                    )
                    settings["links"] = links
            elif "id" in doc and doc.get("kind") != "semantic":
                doc.pop("embedding", None)
                doc.pop("embedding_b64", None)
                count += 1
            fout.write(json.dumps(doc, ensure_ascii=False).encode() + b"\n")
    return count


def space_embedder(client: httpx.Client, space: str) -> str | None:
    """The embedder of ``space``, or ``None`` when it does not exist."""
    r = client.get(f"/api/v1/spaces/{space}")
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise _problem(r, f"reading space {space!r}")
    name = r.json().get("embedder")
    return str(name) if name is not None else None


def import_from(
    client: httpx.Client,
    space: str,
    path: Path,
    create: bool,
    console: Console,
    what: str = "import",
) -> dict[str, Any]:
    """POST the file at ``path`` to ``space``'s import (streamed); the gateway's answer.
    The gateway checks (and embeds) the body as it reads it, so the bar follows it."""
    size = path.stat().st_size
    with _progress(console, bytes_=True) as progress:
        task = progress.add_task(f"{what} {space}", total=size)

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while data := f.read(CHUNK):
                    progress.advance(task, len(data))
                    yield data

        r = client.post(
            f"/api/v1/spaces/{space}/import",
            params={"create": "true"} if create else {},
            content=chunks(),
            headers={"content-type": "application/x-ndjson"},
        )
    if r.status_code != 200:
        raise _problem(r, f"import into {space!r}")
    body: dict[str, Any] = r.json()
    return body


def forget_many(client: httpx.Client, space: str, ids: list[str], console: Console) -> int:
    """Forget ``ids`` in ``space``, up to 1000 per ``POST …/forget`` (each answered once
    its forget commands are in the WAL); returns how many ids were forgotten."""
    with _progress(console) as progress:
        task = progress.add_task(f"forget in {space}", total=len(ids))
        for start in range(0, len(ids), MAX_BATCH):
            batch = ids[start : start + MAX_BATCH]
            r = client.post(f"/api/v1/spaces/{space}/forget", json={"ids": batch})
            if r.status_code != 202:
                raise _problem(r, f"forget in {space!r}")
            progress.advance(task, len(batch))
    return len(ids)


def _client(url: str, api_key: str | None) -> httpx.Client:
    return httpx.Client(
        base_url=url, timeout=httpx.Timeout(120.0, connect=10.0), headers=key_headers(api_key)
    )


def _run(
    args: argparse.Namespace,
    step: Any,
    out: Console | None,
    err: Console | None,
) -> int:
    out = out or Console()
    err = err or Console(stderr=True)
    url = base_url(args)
    try:
        with _client(url, gateway_key(args)) as client:
            summary: dict[str, Any] = step(client, err)
    except TransferFailed as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.code
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        failed = _unreachable(url, exc)
        err.print(f"[red]error:[/] {escape(str(failed))}", highlight=False, soft_wrap=True)
        return failed.code
    if args.json:
        # with the export itself on stdout, the summary goes to stderr
        (err if getattr(args, "output", "") is None else out).out(
            json.dumps(summary), highlight=False
        )
    else:
        line = ", ".join(f"{k}: {v}" for k, v in summary.items())
        err.print(escape(line), highlight=False, soft_wrap=True)
    return OK


def run_export(
    args: argparse.Namespace, out: Console | None = None, err: Console | None = None
) -> int:
    """``engram export --space S [--tag T]… [-o FILE]``: the NDJSON to FILE or stdout."""

    def step(client: httpx.Client, console: Console) -> dict[str, Any]:
        if args.output is None:
            result = export_to(client, args.space, args.tag, sys.stdout.buffer, console)
            sys.stdout.flush()
        else:
            # written beside it and renamed when complete: a failed export leaves
            # no partial file (and an existing one as it was)
            target = Path(args.output)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
            try:
                with os.fdopen(fd, "wb") as f:
                    result = export_to(client, args.space, args.tag, f, console)
                os.replace(name, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(name)
                raise
        return {
            "space": args.space,
            "memories": result["memories"],
            "links": result["links"],
            "bytes": result["bytes"],
            "file": args.output,
        }

    try:
        return _run(args, step, out, err)
    except BrokenPipeError:
        # `engram export … | head`: the reader has all it wanted; end quietly, as a
        # command killed by SIGPIPE would (and keep Python from complaining at exit)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13

    return _run(args, step, out, err)


def run_import(
    args: argparse.Namespace, out: Console | None = None, err: Console | None = None
) -> int:
    """``engram import --space S [--create] FILE``."""

    def step(client: httpx.Client, console: Console) -> dict[str, Any]:
        return import_from(client, args.space, Path(args.file), args.create, console)

    return _run(args, step, out, err)


def run_migrate(
    args: argparse.Namespace, out: Console | None = None, err: Console | None = None
) -> int:
    """``engram migrate --from A --to B [--tag T]… [--embedder NAME [--dim N]] [--move]``."""
    if args.source == args.target:
        (err or Console(stderr=True)).print("[red]error:[/] --from and --to name the same space")
        return REFUSED
    if args.dim is not None and args.embedder is None:
        (err or Console(stderr=True)).print("[red]error:[/] --dim goes with --embedder")
        return REFUSED

    def step(client: httpx.Client, console: Console) -> dict[str, Any]:
        if args.embedder is not None:
            existing = space_embedder(client, args.target)
            if existing is not None and existing != args.embedder:
                raise TransferFailed(
                    f"space {args.target!r} exists and embeds with {existing!r}, not "
                    f"{args.embedder!r}: migrate into a new space"
                )
        with tempfile.TemporaryDirectory(prefix="engram-migrate-") as tmp:
            path = Path(tmp) / f"{args.source}.ndjson"
            with path.open("wb") as f:
                exported = export_to(client, args.source, args.tag, f, console)
            what = "import"
            if args.embedder is not None:
                rewritten = Path(tmp) / f"{args.target}.ndjson"
                for_embedder(path, rewritten, args.embedder, args.dim)
                path, what = rewritten, f"embed with {args.embedder} + import"
            imported = import_from(client, args.target, path, True, console, what)
        forgotten = 0
        if args.move:
            # B has acknowledged every memory it imported: those, and only those, may
            # leave A. The import takes a file whole or not at all, so that is every
            # exported id; should the counts ever differ, A keeps everything.
            if imported["memories"] != len(exported["ids"]):
                raise TransferFailed(
                    f"{args.target!r} imported {imported['memories']} memories of the "
                    f"{len(exported['ids'])} exported: nothing forgotten in {args.source!r}"
                )
            forgotten = forget_many(client, args.source, exported["ids"], console)
        return {
            "from": args.source,
            "to": args.target,
            "memories": imported["memories"],
            "links": imported["links"],
            "seq": imported["seq"],
            "created": imported["created"],
            "forgotten": forgotten,
        }

    return _run(args, step, out, err)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=None,
        help=f"the gateway's base URL (default: ENGRAM_URL, else {DEFAULT_URL})",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_key_option(p)


def add_parsers(sub: Any) -> dict[str, argparse.ArgumentParser]:
    """Add ``export``, ``import`` and ``migrate`` to the ``engram`` subcommands."""
    exp: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="export a space's memories as NDJSON (to a file or stdout)",
        description="Stream GET /api/v1/spaces/S/export: a header line, one line per memory "
        "(with its embedding and explicit links), an end line.",
    )
    exp.add_argument("--space", required=True, metavar="S", help="the space to export")
    exp.add_argument(
        "--tag", action="append", default=[], metavar="T", help="only memories with T (repeat: all)"
    )
    exp.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    _common(exp)
    imp: argparse.ArgumentParser = sub.add_parser(
        "import",
        help="import an export (NDJSON) into a space",
        description="POST FILE to /api/v1/spaces/S/import. Every line is checked before "
        "anything is written; a bad line names its number and nothing is imported.",
    )
    imp.add_argument("--space", required=True, metavar="S", help="the space to import into")
    imp.add_argument(
        "--create", action="store_true", help="create the space from the export's settings"
    )
    imp.add_argument("file", help="an export (engram export -o FILE)")
    _common(imp)
    mig: argparse.ArgumentParser = sub.add_parser(
        "migrate",
        help="copy (or --move) a space's memories into another space",
        description="Export --from, import into --to (created with the source's settings if "
        "missing). --embedder makes --to with another embedder, every memory's text embedded "
        "again. --move then forgets the copied memories in --from, once --to has "
        "acknowledged them.",
    )
    mig.add_argument("--from", dest="source", required=True, metavar="A", help="source space")
    mig.add_argument("--to", dest="target", required=True, metavar="B", help="target space")
    mig.add_argument(
        "--tag", action="append", default=[], metavar="T", help="only memories with T (repeat: all)"
    )
    mig.add_argument(
        "--embedder",
        default=None,
        metavar="NAME",
        help="create --to with this embedder (e5-small, openai, hash-ngram-v1) and embed "
        "every memory's text again with it (vectors of the source are not copied)",
    )
    mig.add_argument(
        "--dim",
        type=int,
        default=None,
        metavar="N",
        help="with --embedder: the new space's dim (default: the source's)",
    )
    mig.add_argument(
        "--move", action="store_true", help="forget the copied memories in the source afterwards"
    )
    _common(mig)
    return {"export": exp, "import": imp, "migrate": mig}
