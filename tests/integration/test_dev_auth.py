"""``engram dev`` with keys required: nats-server runs with the auth callout, an
agent gets in over NATS with its key (and only with a key), and over the
gateway's gRPC API too, the service processes with the generated service user."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest

from engram_cli.devstack import free_port
from engram_client import EngramClient
from engram_client.errors import Unauthorized
from tests.integration.test_dev_cluster import _read_banner

ADMIN_KEY = "dev-admin-key-" + "y" * 20


def test_engram_dev_with_keys_required_checks_nats_connections(tmp_path: Path) -> None:
    http_port, nats_port, grpc_port = free_port(), free_port(), free_port()
    data = tmp_path / "data"
    env = {
        **os.environ,
        "ENGRAM_DATA_DIR": str(data),
        "ENGRAM_HTTP_PORT": str(http_port),
        "ENGRAM_GRPC_PORT": str(grpc_port),
        "ENGRAM_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "ENGRAM_METRICS_PORT": "0",
        "ENGRAM_AUTH": "required",
        "ENGRAM_ADMIN_KEY": ADMIN_KEY,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        banner = _read_banner(proc)
        assert "token=KEY" in banner and "api_key=KEY" in banner, banner
        assert "ENGRAM_NATS_USER=engram" in banner, banner
        assert f"gRPC      127.0.0.1:{grpc_port} (engram.v1.MemoryService" in banner, banner
        for name in ("issuer.nk", "service.password", "system.password", "nats-auth.conf"):
            mode = (data / "nats-auth" / name).stat().st_mode
            assert stat.S_IMODE(mode) == 0o600, name
        asyncio.run(
            _agent(
                f"http://127.0.0.1:{http_port}",
                f"nats://127.0.0.1:{nats_port}",
                f"127.0.0.1:{grpc_port}",
            )
        )
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0


async def _agent(http: str, url: str, grpc: str) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=http, timeout=30) as h:
        r = await h.post("/api/v1/spaces", json={"id": "alpha", "dim": 16}, headers=admin)
        assert r.status_code == 201, r.text
        r = await h.post("/api/v1/keys", json={"spaces": ["alpha"], "role": "write"}, headers=admin)
        assert r.status_code == 201, r.text
        key = r.json()["key"]
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(url, allow_reconnect=False)
    async with EngramClient.nats(url, api_key=key) as c:
        written = await c.space("alpha").remember("an agent's note")
        found = await c.space("alpha").recall("note", k=1)
        assert found.results[0].memory.id == written.ids[0]
        # the gateway's gRPC API checks the same key
        async with EngramClient.grpc(grpc, api_key=key) as g:
            seen = await g.space("alpha").recall("note", k=1)
            assert seen.results[0].memory.id == written.ids[0]
        with pytest.raises(Unauthorized):
            async with EngramClient.grpc(grpc, api_key="") as g:
                await g.space("alpha").recall("note", k=1)
        # revoked through the gateway: the agent's open connection is cut
        async with httpx.AsyncClient(base_url=http, timeout=30) as h:
            r = await h.delete(f"/api/v1/keys/{key.split('_')[1]}", headers=admin)
            assert r.status_code == 204, r.text
        for _ in range(100):
            if not c.transport.nc.is_connected:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.05)
        assert not c.transport.nc.is_connected  # type: ignore[attr-defined]
    with pytest.raises(Unauthorized):
        async with EngramClient.nats(url, api_key=key):
            pass
