"""Engram cluster benchmark (issue 15): spaces placed on several workers.

Run with ``make bench-cluster`` (``make bench`` runs it after the single-space
part), or ``.venv/bin/python ops/bench/cluster.py [--quick] [--only 1,3]``.

Each phase starts its own nats-server(s), workers and gateway on free loopback
ports with a throw-away directory, and measures, reporting each figure against
its target from issue 15:

1. ``--big-spaces`` spaces × ``--big-memories`` memories (random unit vectors,
   dim 384, published straight to ``spaces.<id>.remember``) on 3 workers,
   replicas 1, every snapshot written; all workers stopped, then started at once:
   seconds until every space has answered a recall (target ≤ 30 s). The RSS of
   each worker then, against one worker started alone on the same data (target
   each ≤ 45 % of it), and the spaces per worker.
2. 5000 spaces × 5 memories on 3 workers: all workers restarted, seconds until
   every space answers (target ≤ 60 s); restarted with idle unload, the first
   recall of a cold space (p50 target ≤ 200 ms); warm recall p50 against one space
   of the same size on one worker, the two alternating (target ≤ 1.1×); the
   nats-server's memory with a stream per space.
3. (on phase 1's stack) ``kill -9`` of one of 3 workers, ``--kills`` times: for
   its spaces, the seconds from the kill until each answers again (median, max);
   the killed worker is started again between kills and placement settles.
4. Ingest through a 3-node JetStream cluster with R3 streams against one node,
   into one space and into 10 spaces: msg/s and the ratio.

It prints a table and writes ``ops/bench/results/cluster-latest.json``. It
measures only: nothing fails on a slow figure. Everything it starts is stopped
and its directory removed on exit, error or Ctrl-C. ``--quick`` runs every phase
scaled down (about 2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from bench import environment
from cluster_coldstart import phases_cold_start_failover
from cluster_ingest import phase_cluster_ingest
from cluster_many import phase_many_spaces
from cluster_measure import ClusterConfig, ClusterResults, render, write_json
from measure import step

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "cluster-latest.json"
PHASES = ("1", "2", "3", "4")


def run(cfg: ClusterConfig, only: set[str]) -> ClusterResults:
    started = time.perf_counter()
    res = ClusterResults(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        environment=environment(),
    )
    print(f"engram cluster bench{' (quick)' if cfg.quick else ''}: phases {sorted(only)}")

    async def phases() -> None:
        todo: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if only & {"1", "3"}:
            todo.append(("1+3", lambda: phases_cold_start_failover(cfg, res, "3" in only)))
        if "2" in only:
            todo.append(("2", lambda: phase_many_spaces(cfg, res)))
        if "4" in only:
            todo.append(("4", lambda: phase_cluster_ingest(cfg, res)))
        for name, phase in todo:
            try:
                await phase()
            except Exception as exc:  # the next phase still runs; the report says so
                traceback.print_exc()
                res.failed[name] = repr(exc)

    try:
        asyncio.run(phases())
    finally:
        res.elapsed_s = round(time.perf_counter() - started, 1)
        res.environment["loadavg_end"] = environment()["loadavg_start"]
    return res


def parse_args(argv: list[str] | None = None) -> tuple[ClusterConfig, set[str]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every phase scaled down (~2 min)")
    parser.add_argument(
        "--only", default=",".join(PHASES), help="phases to run, e.g. 1,3 (default all)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    if not only or only - set(PHASES):
        parser.error(f"--only takes phases among {', '.join(PHASES)}, got {args.only!r}")
    return ClusterConfig.of(args.quick, args.out), only


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    cfg, only = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        res = run(cfg, only)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    step("done")
    print(render(res))
    write_json(res, cfg.out)
    print(f"results written to {cfg.out}")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
