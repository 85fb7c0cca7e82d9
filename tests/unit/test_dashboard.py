"""The Grafana dashboard and the Prometheus config in ops/ match the code: every
metric a panel queries is one the worker or the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from engram_gateway.metrics import gateway_metrics
from engram_worker.metrics import worker_metrics

OPS = Path(__file__).resolve().parents[2] / "ops"
DASHBOARD = OPS / "grafana" / "dashboards" / "engram.json"
PROMETHEUS = OPS / "prometheus" / "prometheus.yml"
PROVISIONING = OPS / "grafana" / "provisioning"

METRIC = re.compile(r"\bengram_[a-zA-Z0-9_]*[a-zA-Z0-9]")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def exported_names(registry: CollectorRegistry) -> set[str]:
    """The names a scrape of ``registry`` shows, histograms by their base name.

    A labelled metric with no series yet still yields its family; counters'
    family names lack the ``_total`` their samples carry."""
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        else:
            names.add(family.name)
    return names


def exported() -> dict[str, set[str]]:
    worker, gateway = CollectorRegistry(), CollectorRegistry()
    worker_metrics(worker, max_spaces=10)
    gateway_metrics(gateway)
    return {"worker": exported_names(worker), "gateway": exported_names(gateway)}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows too; rows themselves left out."""
    out = []
    for panel in doc["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def used_metrics(expr: str) -> set[str]:
    return {HISTOGRAM_SUFFIX.sub("", m) for m in METRIC.findall(expr)}


def test_metric_names_regex() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, memory_space) "
        '(rate(engram_recall_duration_seconds_bucket{memory_space=~"$memory_space"}[5m])))'
        " / engram_wal_lag + engram_commands_total"
    )
    assert used_metrics(expr) == {
        "engram_recall_duration_seconds",
        "engram_wal_lag",
        "engram_commands_total",
    }


def test_every_metric_on_the_dashboard_is_exported() -> None:
    names = exported()
    known = names["worker"] | names["gateway"]
    used: dict[str, set[str]] = {}
    for panel in panels(dashboard()):
        for target in panel["targets"]:
            for name in used_metrics(target["expr"]):
                used.setdefault(name, set()).add(panel["title"])
    unknown = {name: sorted(titles) for name, titles in used.items() if name not in known}
    assert not unknown, f"panels query metrics no process exports: {unknown}"
    # the per-space panels of the issue are there, on the worker's metrics
    assert {
        "engram_commands_total",
        "engram_recall_duration_seconds",
        "engram_wal_lag",
        "engram_rejected_messages_total",
        "engram_memories",
        "engram_snapshot_age_seconds",
    } <= used.keys() & names["worker"]
    assert "engram_http_requests_total" in used.keys() & names["gateway"]


def test_dashboard_is_grafana_shaped() -> None:
    doc = dashboard()
    assert doc["uid"] and doc["title"] and isinstance(doc["schemaVersion"], int)
    rows = [p for p in doc["panels"] if p["type"] == "row"]
    ids = [p["id"] for p in rows + panels(doc)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(doc):
        assert panel["type"] and panel["title"]
        assert set(panel["gridPos"]) >= {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], f"panel {panel['title']!r} has no targets"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert target["expr"].count("(") == target["expr"].count(")")
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    space = variables["memory_space"]
    assert space["type"] == "query"
    query = space["query"]["query"] if isinstance(space["query"], dict) else space["query"]
    assert query == "label_values(engram_memories, memory_space)"
    assert "engram_memories" in exported()["worker"]
    # every per-space panel follows the variable
    for panel in panels(doc):
        for target in panel["targets"]:
            if re.search(r"\bmemory_space\b", target["expr"]):
                assert 'memory_space=~"$memory_space"' in target["expr"], panel["title"]


def test_the_panels_the_issue_asks_for() -> None:
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels(dashboard())}
    joined = "\n".join(exprs.values())
    assert re.search(r'engram_commands_total\{[^}]*verb="remember"', joined)
    assert re.search(r'engram_commands_total\{[^}]*outcome="applied"', joined)
    recall = [e for e in exprs.values() if "engram_recall_duration_seconds_bucket" in e]
    assert recall and "histogram_quantile(0.5," in recall[0]
    assert "histogram_quantile(0.99," in recall[0]
    assert "by (le, memory_space)" in recall[0]
    assert "by (memory_space, reason)" in joined
    assert "by (route, status)" in joined


def test_prometheus_scrapes_the_gateway_and_the_workers() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) >= {"engram-gateway", "engram-worker"}
    for job in jobs.values():
        assert job.get("metrics_path", "/metrics") == "/metrics"
    gateways = [t for sc in jobs["engram-gateway"]["static_configs"] for t in sc["targets"]]
    assert gateways == ["gateway1:7432", "gateway2:7432"]  # docker-compose.yml's gateways
    # every replica of the scaled worker service, found by its DNS name
    (sd,) = jobs["engram-worker"]["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A" and sd["port"] == 9464


@pytest.mark.parametrize(
    "path",
    ["datasources/prometheus.yml", "dashboards/engram.yml"],
    ids=["datasource", "dashboards"],
)
def test_grafana_provisioning_parses(path: str) -> None:
    doc = yaml.safe_load((PROVISIONING / path).read_text())
    assert doc["apiVersion"] == 1
    if path.startswith("datasources"):
        (ds,) = doc["datasources"]
        assert ds["type"] == "prometheus" and ds["url"].startswith("http://prometheus:")
    else:
        (provider,) = doc["providers"]
        assert provider["type"] == "file" and provider["options"]["path"]
