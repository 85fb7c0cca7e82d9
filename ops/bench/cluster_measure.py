"""The cluster bench's configuration and figures (each with its target from issue
15, when it has one), and the printed table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClusterConfig:
    quick: bool
    out: Path
    dim: int = 384
    workers: int = 3
    big_spaces: int = 1000  # phase 1: spaces × memories, snapshots in place
    big_memories: int = 1000
    many_spaces: int = 5000  # phase 2: many small spaces
    many_memories: int = 5
    cold_samples: int = 300  # first recalls of cold spaces
    warm_spaces: int = 50
    warm_samples: int = 1000  # warm recalls, each side of the A/B
    idle_unload: float = 10.0  # ENGRAM_SPACE_IDLE_UNLOAD in phase 2's cold part
    kills: int = 3  # phase 3
    ingest_n: int = 20_000  # phase 4: memories into one space, then into 10
    ingest_rounds: int = 2
    snapshot_interval: float = 5.0  # ENGRAM_SNAPSHOT_INTERVAL while phase 1 ingests

    @classmethod
    def of(cls, quick: bool, out: Path) -> ClusterConfig:
        if not quick:
            return cls(quick, out)
        return cls(
            quick,
            out,
            big_spaces=60,
            big_memories=300,
            many_spaces=300,
            cold_samples=40,
            warm_spaces=10,
            warm_samples=200,
            idle_unload=10.0,
            kills=2,
            ingest_n=3000,
            ingest_rounds=1,
        )


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""  # e.g. "≤ 30 s"
    met: bool | None = None  # None: no target
    note: str = ""


@dataclass
class ClusterResults:
    started_at: str
    config: dict[str, Any]
    environment: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # phase → the error that ended it
    elapsed_s: float = 0.0

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        limit: float | None = None,
        below: bool = True,
        note: str = "",
    ) -> Figure:
        """A figure; with ``limit``, its target (``below``: value ≤ limit, else ≥)."""
        if limit is None:
            fig = Figure(name, round(value, 4), unit, note=note)
        else:
            target = f"{'≤' if below else '≥'} {limit:g}{'' if unit == '×' else ' '}{unit}"
            met = value <= limit if below else value >= limit
            fig = Figure(name, round(value, 4), unit, target, bool(met), note)
        self.figures.append(fig)
        return fig


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99, max and mean of ``values`` (seconds), in ms."""
    ms = np.asarray(values, dtype=np.float64) * 1000.0
    p50, p99 = np.percentile(ms, [50, 99])
    return {
        "p50_ms": round(float(p50), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(ms.max()), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "samples": len(values),
    }


def spread(seconds: list[float]) -> dict[str, float]:
    """Median and max of per-space times (seconds)."""
    arr = np.asarray(seconds, dtype=np.float64)
    return {
        "median_s": round(float(np.median(arr)), 3),
        "p90_s": round(float(np.percentile(arr, 90)), 3),
        "max_s": round(float(arr.max()), 3),
        "spaces": len(seconds),
    }


def render(res: ClusterResults) -> str:
    lines = ["", "CLUSTER (issue 15)"]
    width = max(len(f.name) for f in res.figures) if res.figures else 40
    for f in res.figures:
        value = f"{f.value:,.3f}" if abs(f.value) < 100 else f"{f.value:,.0f}"
        verdict = "" if f.met is None else ("MET    " if f.met else "NOT MET")
        target = f"target {f.target}" if f.target else ""
        row = f"  {f.name:<{width}} {value:>12} {f.unit:<5} {verdict:<8}{target:<16} {f.note}"
        lines.append(row.rstrip())
    for phase, error in res.failed.items():
        lines.append(f"  PHASE {phase} FAILED: {error}")
    lines.append(f"\ntotal {res.elapsed_s:.0f} s")
    load, cpus = res.environment.get("loadavg_start") or [0.0], res.environment.get("cpus") or 1
    if load[0] > 0.5 * cpus:
        lines.append(
            f"WARNING: load average {load[0]} on {cpus} CPUs when the run started: other work "
            "shared the machine; the timings are noisy."
        )
    return "\n".join(lines)


def write_json(res: ClusterResults, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(res), indent=2, ensure_ascii=False) + "\n")
