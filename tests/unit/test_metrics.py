"""The metric definitions: names, the memory_space cap, removing a deleted space's
series, rejection categories. Read back through the text format, as Prometheus would."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engram_contract.settings import CommonSettings
from engram_gateway.metrics import gateway_metrics
from engram_worker.metrics import OTHER, SpaceLabels, rejection_category, worker_metrics


def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    text = generate_latest(registry).decode()
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def space_values(registry: CollectorRegistry) -> set[str]:
    return {
        labels["memory_space"] for _, labels, _ in samples(registry) if "memory_space" in labels
    }


def test_the_cap_setting_defaults_to_100(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CommonSettings().max_metric_spaces == 100
    monkeypatch.setenv("ENGRAM_MAX_METRIC_SPACES", "7")
    assert CommonSettings().max_metric_spaces == 7


def test_1000_spaces_never_make_more_than_cap_plus_one_label_values() -> None:
    m = worker_metrics(CollectorRegistry(), max_spaces=50)
    for i in range(1000):
        space = f"space-{i:04d}"
        m.command(space, "remember", "applied")
        m.rejection(space, "not JSON: JSONDecodeError")
        m.recall(space, "similarity", 0.001)
        m.spaces.gauge(m.memories, space).set(i)
    values = space_values(m.registry)
    assert len(values) == 51
    assert OTHER in values
    assert {f"space-{i:04d}" for i in range(50)} | {OTHER} == values
    # the 950 spaces past the cap share one series
    other = [
        v
        for name, labels, v in samples(m.registry)
        if name == "engram_commands_total" and labels["memory_space"] == OTHER
    ]
    assert other == [950.0]


def test_the_cap_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    labels = SpaceLabels(cap=2)
    with caplog.at_level(logging.WARNING, logger="engram_worker.metrics"):
        assert [labels.label(f"s-{i}") for i in range(5)] == ["s-0", "s-1", OTHER, OTHER, OTHER]
        labels.label("s-9")
    warnings = [r for r in caplog.records if "__other__" in r.getMessage()]
    assert len(warnings) == 1


def test_forget_removes_every_series_of_a_space_and_frees_its_slot() -> None:
    m = worker_metrics(CollectorRegistry(), max_spaces=2)
    for space in ("a-space", "b-space"):
        m.command(space, "remember", "applied")
        m.command(space, "forget", "rejected")
        m.rejection(space, "memory.embedding: not finite")
        m.recall(space, "hybrid", 0.002)
        for gauge in (m.memories, m.applied_seq, m.wal_lag, m.snapshot_age, m.index_bytes):
            m.spaces.gauge(gauge, space).set(3)
    m.command("c-space", "remember", "applied")  # over the cap
    assert space_values(m.registry) == {"a-space", "b-space", OTHER}

    m.spaces.forget("a-space")
    assert space_values(m.registry) == {"b-space", OTHER}
    b_series = [s for s in samples(m.registry) if s[1].get("memory_space") == "b-space"]
    assert {name for name, _, _ in b_series} >= {
        "engram_commands_total",
        "engram_rejected_messages_total",
        "engram_recall_duration_seconds_count",
        "engram_memories",
        "engram_applied_seq",
        "engram_wal_lag",
        "engram_snapshot_age_seconds",
        "engram_index_memory_bytes",
    }
    # the slot is free again: the next new space gets its own label value
    m.command("d-space", "remember", "applied")
    assert space_values(m.registry) == {"b-space", "d-space", OTHER}
    # forgetting a space that fell into __other__, or an unknown one, changes nothing
    m.spaces.forget("c-space")
    m.spaces.forget("never-seen")
    assert space_values(m.registry) == {"b-space", "d-space", OTHER}


def test_forgotten_space_starts_from_zero_when_it_comes_back() -> None:
    m = worker_metrics(CollectorRegistry(), max_spaces=10)
    m.command("a-space", "remember", "applied")
    m.spaces.forget("a-space")
    m.command("a-space", "remember", "applied")
    values = [
        v
        for name, labels, v in samples(m.registry)
        if name == "engram_commands_total" and labels["memory_space"] == "a-space"
    ]
    assert values == [1.0]


def test_verbs_outside_the_contract_are_unknown() -> None:
    m = worker_metrics(CollectorRegistry(), max_spaces=10)
    m.command("a-space", "explode", "rejected")
    verbs = {
        labels["verb"] for name, labels, _ in samples(m.registry) if name == "engram_commands_total"
    }
    assert verbs == {"unknown"}


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("not JSON: JSONDecodeError: Expecting value", "not_json"),
        ("invalid message: memory.content: Field required", "invalid"),
        ("invalid message: expected a JSON object", "invalid"),
        ("unsupported schema_version 2; expected 1", "schema_version"),
        ("unknown command 'explode'; known commands: forget, link", "unknown_command"),
        ("source: memory 'm1' does not exist in space 'a-space'", "unknown_memory"),
        ("members: 1 of the 3 members exist in space 'a'; consolidation needs", "unknown_memory"),
        ("memory.embedding: expected 16 values, got 3", "bad_vector"),
        ("members: their centroid cannot be stored (zero)", "bad_vector"),
        ("something new", "other"),
    ],
)
def test_rejection_reasons_map_to_fixed_categories(reason: str, category: str) -> None:
    assert rejection_category(reason) == category


def test_several_registries_in_one_process() -> None:
    for _ in range(3):
        worker_metrics(CollectorRegistry(), max_spaces=10)
        g = gateway_metrics(CollectorRegistry())
        g.default_fallback.inc()
        g.spaces.labels("active").set(2)
        names = {name for name, _, _ in samples(g.registry)}
        assert {"engram_memory_space_default_fallback_total", "engram_spaces"} <= names
