"""Prometheus metrics of the worker (names and labels are a contract:
dashboards are built on them; see docs/operations.md, "Metrics").

A worker builds its metrics on a :class:`~prometheus_client.CollectorRegistry`
of its own (:func:`worker_metrics`), never on the global one, so several workers
can live in one process (the tests).

Per-space series carry a ``memory_space`` label whose values are capped by
:class:`SpaceLabels`: past ``max_metric_spaces`` distinct spaces, the rest share
the value :data:`OTHER`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from engram_contract.subjects import CommandVerb

log = logging.getLogger(__name__)

#: the ``memory_space`` label value of every space past the cap
OTHER = "__other__"

VERBS = frozenset(get_args(CommandVerb))

#: recall latency: 0.5 ms … 1 s (and +Inf)
RECALL_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^not JSON"), "not_json"),
    (re.compile(r"^unknown command"), "unknown_command"),
    (re.compile(r"^unsupported schema_version"), "schema_version"),
    (re.compile(r"embedding:|centroid cannot be stored"), "bad_vector"),
    (re.compile(r"does not exist in space|members exist in space"), "unknown_memory"),
    (re.compile(r"^invalid message"), "invalid"),
    (re.compile(r"^internal error"), "internal"),  # a bug in the fold, not the message
)


def rejection_category(reason: str) -> str:
    """A short fixed category of a rejection reason (the label value of
    ``engram_rejected_messages_total``); never the free text."""
    for pattern, category in _REASONS:
        if pattern.search(reason):
            return category
    return "other"


def verb_label(verb: str) -> str:
    """The ``verb`` label value: a known command verb, or ``unknown``."""
    return verb if verb in VERBS else "unknown"


class SpaceLabels:
    """Caps the ``memory_space`` label values and remembers every labelled series
    it handed out, so a deleted space's series can be removed.

    The first ``cap`` distinct spaces keep their id as label value; any further
    space maps to :data:`OTHER` (one warning is logged the first time).
    :meth:`forget` removes every series of a space and frees its slot.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._spaces: dict[str, None] = {}
        self._warned = False
        # label value -> {(metric, all label values in labelnames order): child}
        self._series: dict[str, dict[tuple[MetricWrapperBase, tuple[str, ...]], object]] = {}

    def label(self, space: str) -> str:
        """The ``memory_space`` label value of ``space`` (:data:`OTHER` stays itself:
        no space id starts with ``_``)."""
        if space in self._spaces or space == OTHER:
            return space
        if len(self._spaces) < self.cap:
            self._spaces[space] = None
            return space
        if not self._warned:
            self._warned = True
            log.warning(
                "more than %d spaces have metrics: the rest are labelled memory_space=%r "
                "(raise ENGRAM_MAX_METRIC_SPACES to see more one by one)",
                self.cap,
                OTHER,
            )
        return OTHER

    @property
    def values(self) -> list[str]:
        """Every ``memory_space`` label value in use (the cap's spaces, and
        :data:`OTHER` once anything fell into it)."""
        return list(self._series)

    def child(self, metric: MetricWrapperBase, space: str, *rest: str) -> object:
        """``metric.labels(label(space), *rest)``, remembered for :meth:`forget`
        (``memory_space`` must be the metric's first label)."""
        value = self.label(space)
        series = self._series.setdefault(value, {})
        key = (metric, (value, *rest))
        found = series.get(key)
        if found is None:
            found = series[key] = metric.labels(*key[1])
        return found

    def counter(self, metric: Counter, space: str, *rest: str) -> Counter:
        child = self.child(metric, space, *rest)
        assert isinstance(child, Counter)
        return child

    def gauge(self, metric: Gauge, space: str, *rest: str) -> Gauge:
        child = self.child(metric, space, *rest)
        assert isinstance(child, Gauge)
        return child

    def histogram(self, metric: Histogram, space: str, *rest: str) -> Histogram:
        child = self.child(metric, space, *rest)
        assert isinstance(child, Histogram)
        return child

    def forget(self, space: str) -> None:
        """Remove every series of ``space`` (deleted) from every metric, and free its
        slot. A space that fell into :data:`OTHER` has no series of its own."""
        if space not in self._spaces:
            return
        del self._spaces[space]
        for metric, labels in self._series.pop(space, {}):
            with contextlib.suppress(KeyError):  # already gone
                metric.remove(*labels)


@dataclass(frozen=True)
class WorkerMetrics:
    """The worker's metrics: per space (labelled ``memory_space``, first) and the
    worker's own (placement)."""

    registry: CollectorRegistry
    spaces: SpaceLabels
    commands: Counter
    rejected: Counter
    recall_seconds: Histogram
    memories: Gauge
    applied_seq: Gauge
    wal_lag: Gauge
    snapshot_age: Gauge
    index_bytes: Gauge
    erase_pending: Gauge
    hosted_spaces: Gauge
    loaded_spaces: Gauge
    space_moves: Counter
    space_load_seconds: Histogram

    def placement(self, hosted: int, loaded: int) -> None:
        """Spaces placed on this worker, and of them those held in memory."""
        self.hosted_spaces.set(hosted)
        self.loaded_spaces.set(loaded)

    def space_moved(self) -> None:
        self.space_moves.inc()

    def space_loaded(self, seconds: float) -> None:
        self.space_load_seconds.observe(seconds)

    def command(self, space: str, verb: str, outcome: str, n: int = 1) -> None:
        """Count ``n`` folded commands (``outcome``: applied or rejected)."""
        self.spaces.counter(self.commands, space, verb_label(verb), outcome).inc(n)

    def rejection(self, space: str, reason: str) -> None:
        """Count one rejected message by the category of its reason."""
        self.spaces.counter(self.rejected, space, rejection_category(reason)).inc()

    def recall(self, space: str, mode: str, seconds: float) -> None:
        self.spaces.histogram(self.recall_seconds, space, mode).observe(seconds)


def worker_metrics(registry: CollectorRegistry, max_spaces: int) -> WorkerMetrics:
    """Define the worker's metrics on ``registry``."""
    space = ("memory_space",)
    return WorkerMetrics(
        registry=registry,
        spaces=SpaceLabels(max_spaces),
        commands=Counter(
            "engram_commands_total",
            "WAL commands folded, by verb and outcome (applied or rejected).",
            [*space, "verb", "outcome"],
            registry=registry,
        ),
        rejected=Counter(
            "engram_rejected_messages_total",
            "WAL messages rejected by the fold, by category of reason.",
            [*space, "reason"],
            registry=registry,
        ),
        recall_seconds=Histogram(
            "engram_recall_duration_seconds",
            "Time to answer a recall query in the worker, by mode.",
            [*space, "mode"],
            buckets=RECALL_BUCKETS,
            registry=registry,
        ),
        memories=Gauge("engram_memories", "Live memories in the space.", space, registry=registry),
        applied_seq=Gauge(
            "engram_applied_seq", "Last WAL sequence folded.", space, registry=registry
        ),
        wal_lag=Gauge(
            "engram_wal_lag",
            "WAL messages not folded yet (stream last seq − applied seq).",
            space,
            registry=registry,
        ),
        snapshot_age=Gauge(
            "engram_snapshot_age_seconds",
            "Seconds since the space's newest snapshot was written.",
            space,
            registry=registry,
        ),
        index_bytes=Gauge(
            "engram_index_memory_bytes",
            "Bytes of the space's vector index: its vectors and graph links.",
            space,
            registry=registry,
        ),
        erase_pending=Gauge(
            "engram_erase_pending",
            "WAL messages of forgotten or replaced memories still to be erased from disk.",
            space,
            registry=registry,
        ),
        # the worker's own series: no memory_space label
        hosted_spaces=Gauge(
            "engram_worker_hosted_spaces",
            "Spaces placed on this worker (rendezvous over the live workers).",
            registry=registry,
        ),
        loaded_spaces=Gauge(
            "engram_worker_loaded_spaces", "Spaces held in memory here.", registry=registry
        ),
        space_moves=Counter(
            "engram_worker_space_moves",
            "Spaces this worker handed over to another (placement changed).",
            registry=registry,
        ),
        space_load_seconds=Histogram(
            "engram_worker_space_load_seconds",
            "Time from a space being placed here to its queries being answered here "
            "(snapshot restore and WAL catch-up).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=registry,
        ),
    )
