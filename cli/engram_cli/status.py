"""``engram status``: every space's WAL position, hosting worker, lag and snapshot,
from the gateway's ``GET /api/v1/status``, as a table (or the JSON itself).

Exit codes: ``0`` all is well; ``1`` a space failed to load, is hosted by no
worker, lags more than ``--lag-warn`` messages behind its WAL, or does not exist
(``--space``); ``2`` no status could be had (gateway unreachable or answering an
error).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from engram_cli.space import add_key_option, gateway_key
from engram_client.http_transport import key_headers, problem_error
from engram_contract.errors import NotFound
from engram_contract.messages import SpaceStatusRow, StatusResponse

DEFAULT_URL = "http://127.0.0.1:7432"
DEFAULT_LAG_WARN = 1000

OK, UNHEALTHY, UNREACHABLE = 0, 1, 2


class StatusUnavailable(Exception):
    """The gateway could not be reached or did not answer with a status."""

    def __init__(self, message: str, code: int = UNREACHABLE) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Verdict:
    """How one space is doing, and the style its row is printed in."""

    label: str
    style: str
    problem: bool


def verdict(row: SpaceStatusRow, lag_warn: int) -> Verdict:
    """A space failed (no worker could load it) or is unhosted (no worker serves it):
    red. Its worker is more than ``lag_warn`` messages behind the WAL, or fewer
    workers serve it than ENGRAM_SPACE_REPLICAS asks: yellow. A space being deleted
    is expected to lose its host, so it is not a problem."""
    if row.failed is not None:
        return Verdict("failed", "red", True)
    if row.status != "active":
        return Verdict(row.status, "dim", False)
    if row.worker is None:
        return Verdict("unhosted", "red", True)
    if row.loaded is False:  # served, loads on its next query or write
        return Verdict("cold", "dim", bool(row.under_replicated))
    if row.wal_lag is not None and row.wal_lag > lag_warn:
        return Verdict("lagging", "yellow", True)
    if row.under_replicated:
        return Verdict("under-replicated", "yellow", True)
    return Verdict("ok", "green", False)


def exit_code(report: StatusResponse, lag_warn: int) -> int:
    """``1`` if any space is a problem (see :func:`verdict`), else ``0``."""
    bad = any(verdict(r, lag_warn).problem for r in report.spaces)
    return UNHEALTHY if bad else OK


def fetch_status(
    url: str, space: str | None, timeout: float, api_key: str | None = None
) -> dict[str, Any]:
    """``GET {url}/api/v1/status[?space=S]``: the JSON body. Raises
    :class:`StatusUnavailable` with a one-line message naming ``url``."""
    import httpx

    params = {} if space is None else {"space": space}
    try:
        r = httpx.get(
            f"{url.rstrip('/')}/api/v1/status",
            params=params,
            timeout=timeout,
            headers=key_headers(api_key),
        )
    except httpx.TimeoutException:
        raise StatusUnavailable(f"the gateway at {url} did not answer in {timeout:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        raise StatusUnavailable(f"cannot reach the gateway at {url}: {reason}") from None
    if r.status_code != 200:
        problem = problem_error(r, r.content)  # the typed error, as the SDK reads it
        code = UNHEALTHY if isinstance(problem, NotFound) else UNREACHABLE
        raise StatusUnavailable(f"the gateway at {url} answered {r.status_code}: {problem}", code)
    try:
        body: dict[str, Any] = r.json()
    except ValueError:
        raise StatusUnavailable(f"the gateway at {url} answered something not JSON") from None
    return body


def _int(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def render(report: StatusResponse, lag_warn: int, console: Console) -> None:
    """Print one table row per space, the reasons of the failed ones, and the
    workers that answered."""
    table = Table(title="Engram spaces", title_justify="left")
    table.add_column("space", no_wrap=True)
    table.add_column("health", no_wrap=True)
    table.add_column("hosts", no_wrap=True)
    table.add_column("applied / stream", justify="right", no_wrap=True)
    table.add_column("lag", justify="right", no_wrap=True)
    table.add_column("memories", justify="right", no_wrap=True)
    table.add_column("rejected", justify="right", no_wrap=True)
    table.add_column("snapshot", justify="right", no_wrap=True)
    table.add_column("age", justify="right", no_wrap=True)
    notes: list[tuple[str, str]] = []
    for row in sorted(report.spaces, key=lambda r: r.id):
        v = verdict(row, lag_warn)
        snapshot = "none" if row.snapshot_seq == 0 else _int(row.snapshot_seq)
        table.add_row(
            row.id,
            v.label,
            ", ".join(row.hosts or ([row.worker] if row.worker else [])) or "–",
            f"{_int(row.applied_seq)} / {_int(row.stream_seq)}",
            _int(row.wal_lag),
            _int(row.memories),
            _int(row.rejected),
            snapshot,
            _age(row.snapshot_age_s),
            style=None if v.style == "green" else v.style,
        )
        if row.failed is not None:
            notes.append((row.id, f"[red]failed:[/] {escape(row.failed)}"))
        elif v.label == "unhosted":
            notes.append((row.id, "[red]no worker hosts it[/] (is a worker running?)"))
        elif v.label == "lagging":
            notes.append((row.id, f"[yellow]{row.wal_lag:,} messages behind its WAL[/]"))
        elif v.label == "under-replicated":
            notes.append(
                (row.id, f"[yellow]served by {len(row.hosts)} worker(s), fewer than asked[/]")
            )
    if report.spaces and console.is_terminal:
        console.print(table)
    elif report.spaces:
        # piped or redirected: as wide as the table needs (rich would assume 80
        # columns and cut space ids short), so scripts can grep whole cells
        width = console.width
        wide = Measurement.get(console, console.options.update_width(1000), table).maximum
        console.width = max(wide, width)
        try:
            console.print(table)
        finally:
            console.width = width
    else:
        console.print("no spaces")
    for space, note in notes:
        console.print(f"  {space}: {note}", highlight=False)
    summary = {p.worker: p for p in report.placement}

    def worker(name: str) -> str:
        p = summary.get(name)
        if p is None:
            return name
        return (
            f"{name} ({p.hosted} hosted, {p.loaded} loaded, index {p.index_bytes / 2**20:.1f} MiB)"
        )

    workers = (
        escape(", ".join(worker(w) for w in report.workers))
        if report.workers
        else "[red]none answered[/]"
    )
    console.print(f"workers: {workers}", highlight=False)


def run_status(
    args: argparse.Namespace, out: Console | None = None, err: Console | None = None
) -> int:
    """The ``engram status`` command; ``out``/``err`` default to stdout/stderr."""
    out = out or Console()
    err = err or Console(stderr=True)
    url = args.url or os.environ.get("ENGRAM_URL") or DEFAULT_URL
    if args.lag_warn < 0:
        err.print("[red]error:[/] --lag-warn must be 0 or more")
        return UNREACHABLE
    try:
        body = fetch_status(url, args.space, args.timeout, gateway_key(args))
        report = StatusResponse.model_validate(body)
    except StatusUnavailable as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.code
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        err.print(
            f"[red]error:[/] the gateway at {url} answered an unexpected status: "
            + escape(str(exc).splitlines()[0]),
            highlight=False,
        )
        return UNREACHABLE
    if args.json:
        out.out(json.dumps(body, indent=2), highlight=False)
    else:
        render(report, args.lag_warn, out)
    return exit_code(report, args.lag_warn)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``status`` to the ``engram`` subcommands (``sub`` from ``add_subparsers``)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "status",
        help="per-space status from the gateway: lag, memories, snapshot, failures",
        description="Ask the gateway (GET /api/v1/status) how every space is doing. Exit code "
        "0: all is well; 1: a space failed to load, has no worker, lags more than --lag-warn "
        "messages behind its WAL, or does not exist; 2: the gateway is unreachable.",
    )
    p.add_argument(
        "--url",
        default=None,
        help=f"the gateway's base URL (default: ENGRAM_URL, else {DEFAULT_URL})",
    )
    p.add_argument("--space", metavar="S", help="only this space")
    add_key_option(p)
    p.add_argument(
        "--lag-warn",
        type=int,
        default=DEFAULT_LAG_WARN,
        metavar="N",
        help=f"a space whose WAL lag exceeds N messages is lagging (default {DEFAULT_LAG_WARN})",
    )
    p.add_argument("--json", action="store_true", help="print the gateway's JSON as it is")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for the gateway (it waits up to ENGRAM_QUERY_TIMEOUT for workers)",
    )
    return p
