"""A deployment's NATS behind the auth callout, set up the way docker-compose
does it, without Docker: ``engram nats-auth init DIR`` writes the secrets and
the auth part of the configuration; a nats-server runs the compose node's own
configuration file (ops/nats/nats-1.conf, moved to loopback ports and without
its cluster block), which includes it; ``engram auth-callout`` and ``engram
worker`` run as their own processes and find their credentials through
``ENGRAM_NATS_AUTH_DIR`` alone. An agent then reaches its space with its key
and nothing without one."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest

from engram_cli.devstack import find_nats_server, free_port, wait_for_port
from engram_client import EngramClient
from engram_nats.authcallout import inbox_prefix
from engram_nats.connection import connect
from engram_nats.keys import KeyStore

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "auth-dir-admin-key-0123456789"
DIM = 8


def _loopback_node_config(port: int, monitor: int, store: Path) -> str:
    """The compose node's configuration, on this machine: loopback ports, a
    temporary store, no cluster (the other nodes are not here)."""
    text = (ROOT / "ops/nats/nats-1.conf").read_text()
    text = re.sub(r"(?ms)^cluster \{.*?^\}\n?", "", text)
    text = text.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{port}")
    text = text.replace("http: 0.0.0.0:8222", f"http: 127.0.0.1:{monitor}")
    text = text.replace("store_dir: /data", f'store_dir: "{store}"')
    assert "include ./auth/nats-auth.conf" in text and "cluster {" not in text
    return text


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 — the child owns it
    return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, log.read_text(errors="replace")
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {log}: {log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("nats-auth-dir")
    auth = root / "auth"
    engram = [sys.executable, "-m", "engram_cli"]
    made = subprocess.run(
        [*engram, "nats-auth", "init", str(auth)], capture_output=True, text=True, check=True
    )
    assert "include it in every nats-server" in made.stdout
    port, monitor = free_port(), free_port()
    (root / "nats.conf").write_text(_loopback_node_config(port, monitor, root / "store"))
    url = f"nats://127.0.0.1:{port}"
    procs = [_spawn([find_nats_server(), "-c", str(root / "nats.conf")], {}, root / "nats.log")]
    try:
        wait_for_port("127.0.0.1", port, 15, procs[0])
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env |= {"ENGRAM_NATS_URL": url, "ENGRAM_NATS_AUTH_DIR": str(auth)}
        env |= {"ENGRAM_METRICS_PORT": "0", "ENGRAM_WORKER_TTL": "2"}
        callout_env = {**env, "ENGRAM_ADMIN_KEY": ADMIN_KEY}
        procs.append(_spawn([*engram, "auth-callout"], callout_env, root / "callout.log"))
        _wait_for_line(root / "callout.log", "engram auth-callout ready", procs[-1], 30)
        procs.append(_spawn([*engram, "worker"], env, root / "worker.log"))
        _wait_for_line(root / "worker.log", " ready on nats:", procs[-1], 30)
        yield url, auth
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def test_an_agent_with_its_key_reaches_its_space_and_nothing_without_one(
    deployment: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, auth = deployment
    space, other = f"dir-{uuid.uuid4().hex[:8]}", f"dir-{uuid.uuid4().hex[:8]}"
    # the admin key ENGRAM_ADMIN_KEY gave the callout opens every space
    async with EngramClient.nats(url, api_key=ADMIN_KEY) as admin:
        await admin.create_space(space, dim=DIM)
        await admin.create_space(other, dim=DIM)
    # an operator's tool on the same directory connects as the service user
    monkeypatch.setenv("ENGRAM_NATS_AUTH_DIR", str(auth))
    nc = await connect(url, "operator", attempts=1)
    keys = KeyStore(nc.jetstream())
    await keys.start()
    _, key = await keys.create("write", [space])
    await keys.close()
    await nc.drain()
    monkeypatch.delenv("ENGRAM_NATS_AUTH_DIR")

    async with EngramClient.nats(url, api_key=key, timeout=2.0) as agent:
        mine = agent.space(space)
        await mine.remember("the cat sleeps on the piano", embedding=[1.0] + [0.0] * (DIM - 1))
        answer = await mine.recall([1.0] + [0.0] * (DIM - 1), k=1)
        assert [r.memory.content for r in answer.results] == ["the cat sleeps on the piano"]

    # the same key on another space's subject: the server refuses it
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    raw = await nats.connect(url, token=key, inbox_prefix=inbox_prefix(key), error_cb=on_error)
    await raw.publish(f"spaces.{other}.remember", b"{}")
    await raw.flush()
    for _ in range(100):
        if any(f'publish to "spaces.{other}.remember"' in e for e in errors):
            break
        await asyncio.sleep(0.02)
    await raw.close()
    assert any("permissions violation" in e for e in errors), errors

    for token in (None, "egk_nosuchkey_0123456789abcdef"):
        with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
            await nats.connect(url, token=token, allow_reconnect=False)
