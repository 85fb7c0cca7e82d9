"""``engram replay``: progress bar and summary around :func:`engram_worker.replay.replay`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


def run_replay(args: argparse.Namespace) -> int:
    import nats.errors

    from engram_contract.settings import WorkerSettings
    from engram_nats.connection import connect
    from engram_worker.replay import ReplayFailed, ReplayRefused, ReplayReport, replay

    settings = WorkerSettings(**({"nats_url": args.nats_url} if args.nats_url else {}))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    err = Console(stderr=True)
    out = Console()
    if args.from_seq < 1:
        err.print("[red]error:[/] --from-seq must be 1 or more")
        return 2

    progress = Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=args.json or not err.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(phase, total=total)
        progress.update(tasks[phase], completed=done, total=total)

    async def go() -> ReplayReport:
        nc = await connect(settings.nats_url, "engram-replay", attempts=10)
        try:
            return await replay(
                nc,
                args.space,
                settings,
                from_seq=args.from_seq,
                dry_run=args.dry_run,
                reload_wait=args.reload_wait,
                progress=update,
            )
        finally:
            await nc.drain()

    try:
        with progress:
            report = asyncio.run(go())
    except ReplayRefused as exc:
        err.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return 2
    except ReplayFailed as exc:
        err.print(f"[red]error:[/] {exc}")
        return 1
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        err.print(f"[red]error:[/] cannot reach NATS at {settings.nats_url}: {exc!r}")
        return 1

    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if not report.reload_errors else 1
    r = report
    out.print(
        f"replayed space [bold]{r.space}[/]: {r.messages:,} messages "
        f"(seq {r.from_seq}..{r.to_seq}) in {r.total_s:.1f} s"
    )
    out.print(
        f"  fold {r.fold_s:.2f} s ({r.fold_rate:,.0f} msg/s) · index {r.index_s:.2f} s"
        + ("" if r.dry_run else f" · snapshot {r.snapshot_s:.2f} s ({_bytes(r.snapshot_bytes)})")
    )
    out.print(
        f"  memories {r.memories:,} · rejected {r.rejected:,} · "
        f"erased {r.erased:,} messages of replaced or forgotten versions"
    )
    if r.dry_run:
        out.print("  dry run: no snapshot written, workers not reloaded")
    elif not r.reloaded and not r.reload_errors:
        out.print("  no worker hosts the space now; the next one to load it uses this snapshot")
    for rep in r.reloaded:
        out.print(f"  worker {rep.worker}: {rep.recovery}; serving seq {rep.applied_seq:,}")
    for e in r.reload_errors:
        out.print(f"  [red]reload failed:[/] {e}")
    return 0 if not r.reload_errors else 1
