"""``engram status`` against a real gateway and worker: the table, ``--json``, and
the exit codes (0 well, 1 a failed or lagging space, 2 gateway unreachable)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
from typing import Any

from nats.aio.client import Client as Nats
from rich.console import Console

from engram_cli.main import build_parser
from engram_cli.status import exit_code, render, run_status
from engram_contract.messages import SpaceStatusRow, StatusResponse
from engram_contract.subjects import stream_name
from engram_nats.registry import SpaceRegistry
from tests.helpers import (
    NatsServer,
    free_port,
    gateway_settings,
    publish_remembers,
    register_space,
    running_gateway,
    wait_gateway_sees_space,
)


async def engram_status(*argv: str) -> tuple[int, str, str]:
    """Run ``engram status ARGV`` in a thread (the gateway serves in this loop):
    exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args(["status", *argv])
    code = await asyncio.to_thread(
        run_status,
        args,
        Console(file=out, color_system=None),  # not a terminal: the table's own width
        Console(file=err, color_system=None),
    )
    return code, out.getvalue(), err.getvalue()


def url_of(client: Any) -> str:
    return str(client.base_url).rstrip("/")


async def test_status_table_names_the_space_and_its_memories(
    nc: Nats, nats_server: NatsServer, workers: Any, space_id: str
) -> None:
    await register_space(nc, space_id)
    seq = await publish_remembers(nc, space_id, range(7))
    w = await workers()
    await w.hosts[space_id].wait_applied(seq, 5)
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        await wait_gateway_sees_space(client, space_id)
        code, out, err = await engram_status("--url", url_of(client), "--space", space_id)
    assert code == 0, out + err
    (line,) = [ln for ln in out.splitlines() if space_id in ln]
    cells = [c.strip() for c in line.strip("│┃| ").split("│")]
    assert cells[0] == space_id and cells[1] == "ok"
    assert cells[2] == w.settings.worker_id
    assert cells[3] == f"{seq} / {seq}" and cells[4] == "0"
    assert cells[5] == "7" and cells[6] == "0"
    assert f"workers: {w.settings.worker_id}" in out


async def test_status_json_is_the_gateways_answer(
    nc: Nats, nats_server: NatsServer, workers: Any, space_id: str
) -> None:
    await register_space(nc, space_id)
    seq = await publish_remembers(nc, space_id, range(3))
    w = await workers()
    await w.hosts[space_id].wait_applied(seq, 5)
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        await wait_gateway_sees_space(client, space_id)
        # through the installed entry point, with the URL from the environment
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engram_cli",
            "status",
            "--json",
            "--space",
            space_id,
            env={**os.environ, "ENGRAM_URL": url_of(client)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    body = json.loads(stdout)
    report = StatusResponse.model_validate(body)
    (row,) = report.spaces
    assert (row.id, row.memories, row.applied_seq, row.wal_lag) == (space_id, 3, seq, 0)
    assert w.settings.worker_id in report.workers


async def test_status_exits_1_for_a_space_no_worker_could_load(
    nc: Nats, nats_server: NatsServer, workers: Any, new_space: Any
) -> None:
    broken = new_space("broken")
    await register_space(nc, broken)
    await publish_remembers(nc, broken, range(2))
    await nc.jetstream().delete_stream(stream_name(broken))  # behind the registry's back
    try:
        w = await workers()
        async with running_gateway(gateway_settings(nats_server.url)) as client:
            await wait_gateway_sees_space(client, broken)
            code, out, err = await engram_status("--url", url_of(client), "--space", broken)
            json_code, json_out, _ = await engram_status(
                "--url", url_of(client), "--space", broken, "--json"
            )
    finally:
        registry = SpaceRegistry(nc.jetstream())
        await registry.open()
        await registry.remove(broken)
    assert code == 1, out + err
    (line,) = [ln for ln in out.splitlines() if broken in ln and "│" in ln]
    assert "failed" in line
    assert f"{broken}: failed: {w.settings.worker_id}: " in out
    assert json_code == 1
    assert json.loads(json_out)["spaces"][0]["failed"].startswith(w.settings.worker_id)


async def test_status_exits_1_for_an_unknown_space(nats_server: NatsServer, workers: Any) -> None:
    await workers()
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        code, _, err = await engram_status("--url", url_of(client), "--space", "no-such-space")
    assert code == 1
    assert "404" in err and "no-such-space" in err


def test_status_exits_2_when_the_gateway_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = subprocess.run(
        [sys.executable, "-m", "engram_cli", "status", "--url", url, "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and url in line
    assert proc.stdout == ""


def row(space: str, **over: Any) -> SpaceStatusRow:
    fields: dict[str, Any] = {
        "id": space,
        "status": "active",
        "stream_seq": 5000,
        "applied_seq": 5000,
        "wal_lag": 0,
        "memories": 4990,
        "rejected": 1,
        "snapshot_seq": 4000,
        "snapshot_age_s": 75.0,
        "worker": "w1",
        "recovery": "no snapshot: replayed the WAL",
        "failed": None,
    }
    return SpaceStatusRow.model_validate(fields | over)


def test_lagging_and_unhosted_spaces_are_highlighted() -> None:
    """No I/O: how rows are judged and coloured (lag above --lag-warn in yellow,
    a space no worker serves in red; a space being deleted is no problem)."""
    report = StatusResponse(
        spaces=[
            row("calm"),
            row("behind", applied_seq=3000, wal_lag=2000),
            row("orphan", applied_seq=None, wal_lag=None, memories=None, worker=None),
            row("going", status="deleting", worker=None),
        ],
        workers=["w1"],
    )
    buf = io.StringIO()
    render(report, 1000, Console(file=buf, width=200, force_terminal=True, color_system="standard"))
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    lines = {
        name: next(
            ln for ln in buf.getvalue().splitlines() if ansi.sub("", ln).startswith(f"│ {name} ")
        )
        for name in ("calm", "behind", "orphan", "going")
    }
    yellow, red = "\x1b[33m", "\x1b[31m"
    assert yellow in lines["behind"] and "lagging" in lines["behind"]
    assert red in lines["orphan"] and "unhosted" in lines["orphan"]
    assert yellow not in lines["calm"] and red not in lines["calm"]
    assert "│ 1m15s │" in ansi.sub("", lines["calm"])
    assert red not in lines["going"]
    assert exit_code(report, 1000) == 1
    assert exit_code(report, 2000) == 1  # still the unhosted one
    calm = StatusResponse(spaces=[row("calm"), row("going", status="deleting")], workers=[])
    assert exit_code(calm, 1000) == 0
