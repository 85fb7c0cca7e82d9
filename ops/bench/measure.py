"""The bench's measure: its configuration, the figures it records (rates, latencies,
targets, all in ``Results``), the data set it feeds every path, and the labels it prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engram_contract.messages import RecallMode

NATS_SPACE = "bench-nats"
HTTP_SPACE = "bench-http"
FIRST_CHECKPOINT = 10_000
REQUEST_TIMEOUT = 15.0  # one NATS query (the worker's own apply wait is 5 s)
HOSTED_TIMEOUT = 30.0  # until the worker hosts a new space

RECALL_MODES: tuple[RecallMode, ...] = ("similarity", "spreading", "hybrid")
RECALL_HOPS = 2  # spreading and hybrid recall: activation spreads this many hops

WORDS = ("apple", "river", "stone", "cloud", "lamp", "orbit", "maple", "signal", "harbor")


# ---------------------------------------------------------------------------
# configuration and results


@dataclass(frozen=True)
class Config:
    n: int
    dim: int
    quick: bool
    samples: int  # latency samples per measurement
    mode_samples: int  # NATS and HTTP recall samples per mode (the modes alternate)
    warmup: int
    out: Path
    k: int = 10
    seed: int = 20240501
    queries: int = 256  # distinct query vectors, cycled
    window: int = 2000  # NATS publishes in flight
    http_batch: int = 1000
    http_in_flight: int = 4
    raw_payload_bytes: int = 1638  # 1.6 KiB

    @property
    def checkpoints(self) -> list[int]:
        """Fill levels at which recall is measured: 10k (if below N) and N."""
        return sorted({min(FIRST_CHECKPOINT, self.n), self.n})

    @property
    def searchable_timeout(self) -> float:
        return max(120.0, self.n / 300)

    @property
    def replay_timeout(self) -> float:
        return max(300.0, self.n / 100)


Cpu = dict[str, float]  # CPU seconds (user + system, all threads) by process


@dataclass
class Rate:
    name: str
    count: int
    seconds: float
    per_s: float
    note: str = ""
    cpu_s: Cpu = field(default_factory=dict)
    stage_of: str = ""  # a part of that measurement (the memories lo→hi)

    @classmethod
    def of(
        cls,
        name: str,
        count: int,
        seconds: float,
        note: str = "",
        cpu: Cpu | None = None,
        stage_of: str = "",
    ) -> Rate:
        cpu = {k: round(v, 3) for k, v in (cpu or {}).items()}
        return cls(name, count, round(seconds, 4), round(count / seconds, 1), note, cpu, stage_of)

    @property
    def label(self) -> str:
        return f"  {self.name}" if self.stage_of else self.name

    def cpu_ms_per_1k(self) -> dict[str, float]:
        per = {k: v * 1e6 / self.count for k, v in self.cpu_s.items()}
        return per | {"total": sum(per.values())} if per else {}


@dataclass
class Latency:
    name: str
    size: int  # memories / vectors in the index when measured
    samples: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, name: str, size: int, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p99 = np.percentile(ms, [50, 99])
        return cls(
            name,
            size,
            len(ms),
            round(float(p50), 4),
            round(float(p99), 4),
            round(float(ms.mean()), 4),
        )


@dataclass
class Target:
    name: str
    value: float
    limit: float
    met: bool
    note: str = ""


@dataclass
class Results:
    started_at: str
    config: dict[str, Any]
    environment: dict[str, Any]
    rates: list[Rate] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    recovery: dict[str, Any] = field(default_factory=dict)
    # recall by mode: recall.<nats|http|in_worker>.<mode>.<size>, graph, raw search
    recall: dict[str, Any] = field(default_factory=dict)
    # the worker restarted with the snapshot in place; the raw limit beside it
    restart: dict[str, Any] = field(default_factory=dict)
    # the worker's RSS (bytes) without a space, with the N-memory one; index bytes
    memory: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def rate(self, name: str, stage_of: str = "") -> Rate:
        return next(r for r in self.rates if r.name == name and r.stage_of == stage_of)

    def stages(self, of: str) -> list[Rate]:
        return [r for r in self.rates if r.stage_of == of]

    def latency(self, name: str, size: int) -> Latency:
        return next(x for x in self.latencies if x.name == name and x.size == size)


# ---------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Dataset:
    vectors: np.ndarray  # (n, dim) float32, unit rows
    contents: list[str]
    queries: np.ndarray  # (queries, dim) float32, unit rows


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs


def make_dataset(cfg: Config) -> Dataset:
    rng = np.random.default_rng(cfg.seed)
    vectors = unit_vectors(rng, cfg.n, cfg.dim)
    picks = rng.integers(0, len(WORDS), size=(cfg.n, 3))
    contents = [
        f"memory {i}: {WORDS[a]} {WORDS[b]} {WORDS[c]}" for i, (a, b, c) in enumerate(picks)
    ]
    return Dataset(vectors, contents, unit_vectors(rng, cfg.queries, cfg.dim))


# ---------------------------------------------------------------------------
# labels and statistics


def size_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def stage_label(lo: int, hi: int) -> str:
    return f"stage {size_label(lo)}→{size_label(hi)}"


def step(text: str) -> None:
    print(f"  … {text}", flush=True)


def median_of(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def latency_cell(x: Latency) -> dict[str, float]:
    return {"p50_ms": x.p50_ms, "p99_ms": x.p99_ms, "mean_ms": x.mean_ms, "samples": x.samples}
