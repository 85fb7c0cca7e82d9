"""The report: ratios and targets from the figures, the recall summary by mode, the
printed tables and the JSON results file."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from measure import RECALL_HOPS, RECALL_MODES, Config, Results, Target, latency_cell, size_label
from recall_paths import IN_WORKER_CALLS
from restart import render_restart
from throughput import (
    CLIENTS,
    HTTP_MULTI,
    PATHS,
    ceiling_ratios,
    qps,
    qps_ratio_name,
    throughput_name,
)
from wire import recall_name

INGEST_TARGETS = {"nats": 0.85, "http": 0.75}  # Engram ingest / raw usearch add (issue 14)
RECALL_TARGET_MS = 5.0  # HTTP recall p50 ≤ 5 ms at 100k
RECALL_TARGET_SIZE = 100_000
SPREAD_RATIO_TARGET = 5.0  # in-worker spreading recall p50 ≤ 5× raw usearch search p50
SPREAD_P99_TARGET_MS = 10.0  # HTTP spreading recall p99 ≤ 10 ms at 100k
RESTORE_TARGET = 0.05  # snapshot restore ≤ 5 % of a full replay
FOLD_TARGET = 0.55  # WAL fold ≥ 55 % of raw ordered-consumer replay (issue 14)
RESTART_TARGET = 1.5  # worker start → first recall ≤ 1.5× (chunk read + Index.restore)
RSS_TARGET = 1.5  # worker RSS per memory ≤ 1.5× the usearch index's bytes per memory
QPS_SCALING_TARGET = 3.0  # 8-client recall QPS ≥ 3× single-client QPS (on 2 cores)
HTTP_FLOOR_MS = 0.5  # GET /health p50
HTTP_OVER_NATS_MS = 1.0  # HTTP recall p50 ≤ NATS recall p50 + 1 ms
NATS_OVER_WORKER_MS = 1.0  # NATS recall p50 ≤ in-worker recall p50 + 1 ms
HTTP_P99_OVER_P50 = 2.0  # HTTP recall p99 ≤ 2× its p50


def compute_ratios(cfg: Config, res: Results) -> None:
    add = res.rate("raw usearch add").per_s
    res.ratios["nats ingest / raw usearch add"] = res.rate("engram nats ingest").per_s / add
    res.ratios["http ingest / raw usearch add"] = res.rate("engram http ingest").per_s / add
    res.ratios["engram nats publish / raw jetstream publish"] = (
        res.rate("engram nats publish (acked)").per_s / res.rate("raw jetstream publish").per_s
    )
    for raw_stage, stage in zip(
        res.stages("raw usearch add"), res.stages("engram nats ingest"), strict=True
    ):
        res.ratios[f"nats ingest / raw usearch add, {stage.name}"] = stage.per_s / raw_stage.per_s
    raw_cpu = res.rate("raw usearch add").cpu_ms_per_1k().get("total")
    for path in ("nats", "http"):
        cpu = res.rate(f"engram {path} ingest").cpu_ms_per_1k()
        if raw_cpu and "worker" in cpu:
            res.ratios[f"{path} ingest worker cpu / raw usearch add cpu"] = cpu["worker"] / raw_cpu
            res.ratios[f"{path} ingest all-process cpu / raw usearch add cpu"] = (
                cpu["total"] / raw_cpu
            )
    for size in cfg.checkpoints:
        raw = res.latency(f"raw usearch search k={cfg.k}", size).p50_ms
        for path in ("nats", "http", "grpc"):
            p50 = res.latency(f"engram {path} recall", size).p50_ms
            res.ratios[f"{path} recall p50 / raw search p50 @{size_label(size)}"] = p50 / raw
    # the in-worker calls against the raw search timed just before them
    raw = res.latency(IN_WORKER_CALLS["raw_search"].format(k=cfg.k), cfg.n).p50_ms
    for mode in RECALL_MODES:
        p50 = res.latency(recall_name("in-worker", mode), cfg.n).p50_ms
        res.ratios[f"in-worker {mode} recall p50 / raw search p50 @{size_label(cfg.n)}"] = p50 / raw
    # the space's (restored) index against the raw one, timed the same way
    p50 = res.latency(IN_WORKER_CALLS["index_search_loop"].format(k=cfg.k), cfg.n).p50_ms
    res.ratios[f"in-worker index search p50 / raw search p50 @{size_label(cfg.n)}"] = p50 / raw
    res.ratios["wal fold / raw wal replay"] = (
        res.rate("wal fold (apply_message, no index)").per_s
        / res.rate("raw wal replay (count only)").per_s
    )
    one, many = CLIENTS[0], CLIENTS[-1]
    for path in PATHS:
        res.ratios[qps_ratio_name(path)] = qps(res, path, many) / qps(res, path, one)
    res.ratios |= ceiling_ratios(res)  # what the cores allow the search alone
    # what a deployment with several gateway processes gains over the default
    res.ratios[f"{HTTP_MULTI} recall QPS {many} clients / http {one} client"] = qps(
        res, HTTP_MULTI, many
    ) / qps(res, "http", one)
    rec = res.recovery
    res.ratios["snapshot restore / full replay"] = (
        rec["snapshot_restore"]["seconds"] / rec["full_replay"]["seconds"]
    )
    res.ratios |= restart_ratios(res)
    res.ratios = {k: round(v, 4 if "restore" in k else 3) for k, v in res.ratios.items()}


def restart_ratios(res: Results) -> dict[str, float]:
    """Restart against its raw limit; the worker's RSS per memory (marginal: with the
    space minus without) against the index's own bytes per memory."""
    out: dict[str, float] = {}
    rs, mem = res.restart, res.memory
    if rs:
        out["restart (process) / raw limit"] = rs["process_to_first_recall_s"] / rs["raw_limit_s"]
        out["restart (host start) / raw limit"] = (
            rs["host_start_to_first_recall_s"] / rs["raw_limit_s"]
        )
    per_index = mem.get("index_bytes_per_memory")
    # the index's own bytes two ways: usearch's memory_usage (its arenas, reserve
    # included; the target's) and its serialised length (vectors and links)
    per_data = mem.get("index_serialized_bytes_per_memory")
    for when in ("after_ingest", "after_restart"):
        rss = mem.get(f"worker_rss_{when}")
        if rss and per_index and mem.get("worker_rss_no_space"):
            per = (rss - mem["worker_rss_no_space"]) / mem["memories"]
            mem[f"rss_bytes_per_memory_{when}"] = round(per, 1)
            out[f"worker rss per memory {when.replace('_', ' ')} / index bytes"] = per / per_index
            if per_data:
                out[f"worker rss per memory {when.replace('_', ' ')} / index data"] = per / per_data
    return out


def restart_targets(res: Results) -> list[Target]:
    out = []
    ratio = res.ratios.get("restart (process) / raw limit")
    if ratio is not None:
        rs = res.restart
        out.append(
            Target(
                f"restart to first recall ≤ {RESTART_TARGET:g}× chunk read + Index.restore",
                ratio,
                RESTART_TARGET,
                bool(ratio <= RESTART_TARGET),
                f"{rs['process_to_first_recall_s']:.2f} s from spawn "
                f"({rs['host_start_to_first_recall_s']:.2f} s from host start) vs "
                f"{rs['raw_limit_s']:.2f} s",
            )
        )
    for when in ("after_ingest", "after_restart"):
        ratio = res.ratios.get(f"worker rss per memory {when.replace('_', ' ')} / index bytes")
        if ratio is not None:
            mem = res.memory
            out.append(
                Target(
                    f"worker RSS per memory {when.replace('_', ' ')} ≤ {RSS_TARGET:g}× "
                    "index bytes per memory",
                    ratio,
                    RSS_TARGET,
                    bool(ratio <= RSS_TARGET),
                    f"{mem[f'rss_bytes_per_memory_{when}']:,.0f} B vs "
                    f"{mem['index_bytes_per_memory']:,.0f} B; RSS "
                    f"{mem[f'worker_rss_{when}'] / 1e6:,.0f} MB, "
                    f"{mem['worker_rss_no_space'] / 1e6:,.0f} MB without a space",
                )
            )
    return out


def compute_targets(cfg: Config, res: Results) -> None:
    for path in ("nats", "http"):
        ratio = res.ratios[f"{path} ingest / raw usearch add"]
        target = INGEST_TARGETS[path]
        res.targets.append(
            Target(
                f"{path} ingest ≥ {target:.0%} of raw usearch add",
                float(ratio),
                target,
                bool(ratio >= target),
            )
        )
    p50 = res.latency("engram http recall", cfg.n).p50_ms
    at = (
        ""
        if cfg.n == RECALL_TARGET_SIZE
        else f"; measured at {size_label(cfg.n)}, target is at 100k"
    )
    res.targets.append(
        Target(
            f"http recall p50 ≤ {RECALL_TARGET_MS:g} ms at 100k",
            p50,
            RECALL_TARGET_MS,
            bool(p50 <= RECALL_TARGET_MS),
            f"similarity mode{at}",
        )
    )
    ratio = res.ratios[f"in-worker spreading recall p50 / raw search p50 @{size_label(cfg.n)}"]
    p50 = res.latency(recall_name("in-worker", "spreading"), cfg.n).p50_ms
    raw = res.latency(IN_WORKER_CALLS["raw_search"].format(k=cfg.k), cfg.n).p50_ms
    res.targets.append(
        Target(
            f"in-worker spreading recall p50 ≤ {SPREAD_RATIO_TARGET:g}× raw search p50 at 100k",
            ratio,
            SPREAD_RATIO_TARGET,
            bool(ratio <= SPREAD_RATIO_TARGET),
            f"{p50:.3f} ms vs {raw:.3f} ms, {RECALL_HOPS} hops{at}",
        )
    )
    spreading = res.latency(recall_name("http", "spreading"), cfg.n)
    res.targets.append(
        Target(
            f"http spreading recall p99 ≤ {SPREAD_P99_TARGET_MS:g} ms at 100k",
            spreading.p99_ms,
            SPREAD_P99_TARGET_MS,
            bool(spreading.p99_ms <= SPREAD_P99_TARGET_MS),
            f"p50 {spreading.p50_ms:.3f} ms, {spreading.samples} samples{at}",
        )
    )
    restore = res.ratios["snapshot restore / full replay"]
    res.targets.append(
        Target(
            f"snapshot restore ≤ {RESTORE_TARGET:.0%} of full replay",
            restore,
            RESTORE_TARGET,
            bool(restore <= RESTORE_TARGET),
            f"{res.recovery['snapshot_restore']['seconds']:.2f} s vs "
            f"{res.recovery['full_replay']['seconds']:.2f} s at {size_label(cfg.n)}",
        )
    )
    http_targets(cfg, res)
    res.targets.extend(restart_targets(res))
    one, many = CLIENTS[0], CLIENTS[-1]
    for path in PATHS:
        ratio = res.ratios[qps_ratio_name(path)]
        loaded = res.latency(throughput_name(path, many), cfg.n)
        res.targets.append(
            Target(
                f"{path} recall QPS, {many} clients ≥ {QPS_SCALING_TARGET:g}× single-client QPS",
                ratio,
                QPS_SCALING_TARGET,
                bool(ratio >= QPS_SCALING_TARGET),
                f"{qps(res, path, many):,.0f} vs {qps(res, path, one):,.0f} QPS; p99 under "
                f"load {loaded.p99_ms:.2f} ms; {res.environment.get('cpus')} CPUs; raw search "
                f"alone {res.ratios[f'raw search QPS {many} threads / {one} thread']:.2f}×",
            )
        )
    fold = res.ratios["wal fold / raw wal replay"]
    res.targets.append(
        Target(
            f"wal fold ≥ {FOLD_TARGET:.0%} of raw ordered-consumer replay",
            fold,
            FOLD_TARGET,
            bool(fold >= FOLD_TARGET),
        )
    )


def summarize_recall(cfg: Config, res: Results) -> None:
    """``recall.<nats|http|in_worker>.<mode>.<size>``: the recall latencies by mode,
    next to the raw search they compare with (and what the in-worker run found).
    ``raw_search_p50_ms``: the raw search of the start of the run, at each size;
    the in-worker ratios divide by ``in_worker.raw_search`` (the same index and
    method, timed again just before the in-worker calls)."""

    def cell(name: str, size: int) -> dict[str, float]:
        return latency_cell(res.latency(name, size))

    raw = {
        size: res.latency(f"raw usearch search k={cfg.k}", size).p50_ms for size in cfg.checkpoints
    }
    out: dict[str, Any] = {
        "k": cfg.k,
        "max_hops": RECALL_HOPS,
        "reinforce": True,
        "modes": list(RECALL_MODES),
        "raw_search_p50_ms": {str(size): p50 for size, p50 in raw.items()},
    }
    for path in ("nats", "http", "grpc"):
        out[path] = {
            mode: {str(size): cell(recall_name(path, mode), size) for size in cfg.checkpoints}
            for mode in RECALL_MODES
        }
    names = {m: recall_name("in-worker", m) for m in RECALL_MODES} | {
        key: name.format(k=cfg.k) for key, name in IN_WORKER_CALLS.items()
    }
    rerun_raw = res.latency(names["raw_search"], cfg.n).p50_ms
    in_worker: dict[str, Any] = {}
    for key, name in names.items():
        row = cell(name, cfg.n)
        ratio = round(row["p50_ms"] / rerun_raw, 3)
        in_worker[key] = {str(cfg.n): row | {"p50_over_raw_search_p50": ratio}}
    out["in_worker"] = in_worker
    res.recall = out | res.recall


# ---------------------------------------------------------------------------
def http_targets(cfg: Config, res: Results) -> None:
    """Issue 14's transport targets at N: the floor, NATS recall over in-worker recall,
    HTTP recall over NATS recall, the p99."""
    floor = res.latency("floor: http GET /health", cfg.n).p50_ms
    res.targets.append(
        Target(
            f"http floor (GET /health p50) ≤ {HTTP_FLOOR_MS:g} ms",
            floor,
            HTTP_FLOOR_MS,
            bool(floor <= HTTP_FLOOR_MS),
            "keep-alive client (ops/bench/keepalive.py)",
        )
    )
    for mode in RECALL_MODES:
        http = res.latency(recall_name("http", mode), cfg.n)
        nats = res.latency(recall_name("nats", mode), cfg.n)
        inside = res.latency(f"in-worker recall {mode}", cfg.n)
        res.targets.append(
            Target(
                f"nats {mode} recall p50 ≤ in-worker p50 + {NATS_OVER_WORKER_MS:g} ms",
                nats.p50_ms - inside.p50_ms,
                NATS_OVER_WORKER_MS,
                bool(nats.p50_ms - inside.p50_ms <= NATS_OVER_WORKER_MS),
                f"{nats.p50_ms:.3f} vs {inside.p50_ms:.3f} ms at {size_label(cfg.n)}",
            )
        )
        over = http.p50_ms - nats.p50_ms
        res.targets.append(
            Target(
                f"http {mode} recall p50 ≤ nats p50 + {HTTP_OVER_NATS_MS:g} ms",
                over,
                HTTP_OVER_NATS_MS,
                bool(over <= HTTP_OVER_NATS_MS),
                f"{http.p50_ms:.3f} vs {nats.p50_ms:.3f} ms at {size_label(cfg.n)}",
            )
        )
        grpc = res.latency(recall_name("grpc", mode), cfg.n)
        res.targets.append(
            Target(
                f"grpc {mode} recall p50 ≤ http p50",
                grpc.p50_ms / http.p50_ms,
                1.0,
                bool(grpc.p50_ms <= http.p50_ms),
                f"{grpc.p50_ms:.3f} vs {http.p50_ms:.3f} ms (p99 {grpc.p99_ms:.3f} vs "
                f"{http.p99_ms:.3f}) at {size_label(cfg.n)}",
            )
        )
        spread = http.p99_ms / http.p50_ms
        res.targets.append(
            Target(
                f"http {mode} recall p99 ≤ {HTTP_P99_OVER_P50:g}× its p50",
                spread,
                HTTP_P99_OVER_P50,
                bool(spread <= HTTP_P99_OVER_P50),
                f"{http.p99_ms:.3f} vs {http.p50_ms:.3f} ms at {size_label(cfg.n)}",
            )
        )


# output


def render(res: Results) -> str:
    lines = ["", "THROUGHPUT", f"  {'measurement':<40} {'count':>8} {'seconds':>9} {'per s':>11}"]
    lines += [
        f"  {r.label:<40} {r.count:>8} {r.seconds:>9.2f} {r.per_s:>11,.0f}  {r.note}"
        for r in res.rates
    ]
    lines += ["", "CPU ms per 1000 memories (all threads; steadier than wall time on a busy box)"]
    cols = ["worker", "gateway", HTTP_MULTI, "nats-server", "bench", "total"]
    lines.append(f"  {'measurement':<40}" + "".join(f"{c:>12}" for c in cols))
    for r in res.rates:
        per = r.cpu_ms_per_1k()
        if per:
            cells = (f"{per[c]:>12,.0f}" if c in per else f"{'-':>12}" for c in cols)
            lines.append(f"  {r.label:<40}" + "".join(cells))
    lines += ["", "LATENCY", f"  {'measurement':<40} {'size':>8} {'p50 ms':>9} {'p99 ms':>9}"]
    lines += [
        f"  {x.name:<40} {size_label(x.size):>8} {x.p50_ms:>9.3f} {x.p99_ms:>9.3f}  (n={x.samples})"
        for x in res.latencies
    ]
    lines += render_recall(res.recall)
    lines += render_recovery(res.recovery)
    lines += render_restart(res)
    lines += ["", "RATIOS"]
    lines += [f"  {name:<52} {value:>8.3f}" for name, value in res.ratios.items()]
    lines += ["", "TARGETS"]
    for t in res.targets:
        verdict = "MET    " if t.met else "NOT MET"
        note = f"  ({t.note})" if t.note else ""
        lines.append(f"  {verdict} {t.name}: {t.value:.3f} vs {t.limit:g}{note}")
    lines.append(f"\ntotal {res.elapsed_s:.0f} s")
    load, cpus = res.environment.get("loadavg_start") or [0.0], res.environment.get("cpus") or 1
    if load[0] > 0.5 * cpus:
        lines.append(
            f"WARNING: load average {load[0]} on {cpus} CPUs when the run started: other work "
            "shared the machine, wall-clock figures and ratios are noisy (compare the CPU table)."
        )
    return "\n".join(lines)


def render_recall(rec: dict[str, Any]) -> list[str]:
    if not rec:
        return []
    modes = rec["modes"]

    def cell(x: dict[str, float]) -> str:
        ratio = x.get("p50_over_raw_search_p50")
        extra = "" if ratio is None else f" ×{ratio:.1f}"
        return f"{x['p50_ms']:.3f} / {x['p99_ms']:.3f}{extra}"

    rows: list[tuple[int, int, str, list[str]]] = []
    for order, path in enumerate(("nats", "http", "grpc", "in_worker")):
        for size in rec[path][modes[0]]:
            cells = [cell(rec[path][m][size]) for m in modes]
            rows.append((int(size), order, path.replace("_", "-"), cells))
    raw = ", ".join(
        f"{p50:.3f} ms @{size_label(int(s))}" for s, p50 in rec["raw_search_p50_ms"].items()
    )
    search = next(iter(rec["in_worker"]["index_search"].values()))
    rerun = next(iter(rec["in_worker"]["raw_search"].values()))
    loop = next(iter(rec["in_worker"]["index_search_loop"].values()))
    lines = [
        "",
        f"RECALL BY MODE (k={rec['k']}, {rec['max_hops']} hops, reinforce on; p50 / p99 ms; "
        "in-worker: SpaceState.recall, × raw search p50)",
        f"  {'path':<10} {'size':>6}" + "".join(f"{m:>26}" for m in modes),
    ]
    lines += [
        f"  {path:<10} {size_label(size):>6}" + "".join(f"{c:>26}" for c in cells)
        for size, _, path, cells in sorted(rows)
    ]
    lines += [
        f"  search k={rec['k']} p50, raw usearch: {raw} at the start; "
        f"{rerun['p50_ms']:.3f} ms rerun just before the in-worker calls (the × base)",
        f"  search k={rec['k']} p50, the space's index: {loop['p50_ms']:.3f} ms the same way "
        f"(×{loop['p50_over_raw_search_p50']:.2f}); {search['p50_ms']:.3f} ms in the "
        f"rotation with the recalls (×{search['p50_over_raw_search_p50']:.2f})",
    ]
    graph, reach = rec.get("graph"), rec.get("spreading_reach")
    if graph:
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in graph["edges_by_kind"].items())
        lines.append(
            f"  association graph: {graph['edges']:,} edges ({kinds or 'none'}) over "
            f"{graph['memories']:,} memories, mean degree {graph['mean_degree']:.2f}"
        )
    if reach:
        hops = ", ".join(f"hop {h}: {n:g}" for h, n in reach["mean_by_hop"].items())
        lines.append(
            f"  spreading reaches {reach['mean']:g} memories on average (p50 {reach['p50']:g}, "
            f"max {reach['max']}; {hops}) from {reach['seeds']} seeds, fanout "
            f"{reach['max_fanout']}"
        )
    first = rec.get("in_worker_first_pass")
    if first:
        firsts = ", ".join(
            f"{name.replace('_', ' ')} {next(iter(by_size.values()))['p50_ms']:.3f}"
            for name, by_size in first.items()
        )
        lines.append(f"  in-worker first pass over the distinct cues, p50 ms: {firsts}")
    return lines


def render_recovery(rec: dict[str, Any]) -> list[str]:
    if not rec:
        return []
    replay, restore, parts = rec["full_replay"], rec["snapshot_restore"], rec["restore_breakdown"]
    size = rec["snapshot_bytes"] or float("nan")
    rounds = ", ".join(f"{s:.2f}" for s in restore["rounds_s"])

    def row(name: str, seconds: float, note: str = "") -> str:
        return f"  {name:<40} {seconds:>9.2f} s  {note}".rstrip()

    return [
        "",
        f"RECOVERY (space {rec['space']}, stream last seq {rec['stream_last_seq']}; "
        "seconds from start() until a recall at that seq answers)",
        row("full replay (fold + index)", replay["seconds"], f"cpu {replay['cpu_s']:.1f} s"),
        row(
            "snapshot restore",
            restore["seconds"],
            f"median of {rounds}; cpu {restore['cpu_s']:.1f} s",
        ),
        row(
            "  object store load",
            parts["object_store_load_s"],
            f"raw chunk read (next_msg): {parts['raw_chunk_read_s']:.2f} s",
        ),
        row("  decode (checksums, columns)", parts["decode_s"]),
        row("  usearch Index.restore", parts["index_from_bytes_s"]),
        row("  SpaceState.restore", parts["state_restore_s"]),
        row(
            "snapshot write (host.snapshotter.snapshot())",
            rec["snapshot_write_s"],
            f"{size / 1e6:,.1f} MB, seq {rec['snapshot_seq']}, {rec['snapshot_memories']} memories",
        ),
        row(
            "worker graceful stop (SIGTERM → exit)",
            rec["worker_graceful_stop_s"],
            f"its snapshot of {rec['space']} at seq {rec['worker_snapshot_seq']}",
        ),
    ]


def write_json(res: Results, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(res), indent=2, ensure_ascii=False) + "\n")
