"""``engram dev --nats-nodes 3 --workers 2 --gateways 2``: the clustered topology on
one machine, as a user starts it — every URL printed, a space written through one
gateway answers through the other, its WAL has three replicas, one Ctrl-C stops
every process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engram_cli.devstack import free_port


def _read_banner(proc: subprocess.Popen[str], timeout: float = 90) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"engram dev exited {proc.returncode}: {''.join(lines)}")
            continue
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            return "".join(lines)
    raise TimeoutError("".join(lines))


def test_three_nodes_two_workers_two_gateways(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ENGRAM_DATA_DIR": str(tmp_path / "data"),
        "ENGRAM_HTTP_PORT": str(port),
        "ENGRAM_GRPC_PORT": str(free_port()),
        "ENGRAM_NATS_URL": f"nats://127.0.0.1:{free_port()}",
    }
    env.pop("ENGRAM_STREAM_REPLICAS", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engram_cli",
            "dev",
            "--nats-nodes",
            "3",
            "--workers",
            "2",
            "--gateways",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    children: list[int] = []
    try:
        banner = _read_banner(proc)
        gateways = re.findall(r"(http://127\.0\.0\.1:\d+)/api/v1/spaces", banner)
        nats_urls = re.findall(r"(nats://127\.0\.0\.1:\d+)  \(monitoring", banner)
        assert len(gateways) == 2 and len(set(gateways)) == 2, banner
        grpc = re.findall(r"^  (?:gRPC      |            )(127\.0\.0\.1:\d+)$", banner, re.M)
        grpc += re.findall(r"(127\.0\.0\.1:\d+) \(engram\.v1\.MemoryService", banner)
        assert len(set(grpc)) == 2, banner  # each gateway its own gRPC port
        assert len(nats_urls) == 3, banner
        assert len(re.findall(r"/metrics \(worker-\d\)", banner)) == 2, banner
        children = _children(proc.pid)
        assert len(children) == 7  # 3 nats-servers, 2 workers, 2 gateways
        one, other = gateways
        r = httpx.post(f"{one}/api/v1/spaces", json={"id": "clustered"}, timeout=30)
        assert r.status_code == 201, r.text
        r = httpx.post(
            f"{one}/api/v1/spaces/clustered/memories",
            json={
                "memories": [
                    {"content": "the cat sat on the mat"},
                    {"content": "dogs bark at night"},
                ]
            },
            timeout=30,
        )
        assert r.status_code in (200, 201, 202), r.text
        seq = r.json()["seq"]
        r = httpx.post(
            f"{other}/api/v1/spaces/clustered/recall",
            json={"query": "the cat sat on the mat", "k": 1, "min_seq": seq},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["memory"]["content"] == "the cat sat on the mat"
        assert _replicas(nats_urls, "ENGRAM_SPACE_clustered") == 3
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def _children(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc: ppid is field 4 of stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _replicas(urls: list[str], stream: str) -> int:
    import asyncio

    import nats

    async def ask() -> int:
        nc = await nats.connect(urls)
        try:
            info = await nc.jetstream().stream_info(stream)
            return int(info.config.num_replicas or 1)
        finally:
            await nc.close()

    return asyncio.run(ask())
