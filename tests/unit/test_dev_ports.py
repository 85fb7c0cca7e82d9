"""`engram dev` refuses to start on a port another process holds: otherwise it
would announce itself running while its requests went to that process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engram_cli.devstack import free_port


@pytest.mark.parametrize("which", ["http", "nats", "grpc"])
def test_a_taken_port_is_refused_with_the_setting_to_change(tmp_path: Path, which: str) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    ports = {"http": free_port(), "nats": free_port(), "grpc": free_port(), which: taken}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")},
        "ENGRAM_DATA_DIR": str(tmp_path),
        "ENGRAM_HTTP_PORT": str(ports["http"]),
        "ENGRAM_NATS_URL": f"nats://127.0.0.1:{ports['nats']}",
        "ENGRAM_GRPC_PORT": str(ports["grpc"]),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "engram_cli", "dev"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        holder.close()
    assert done.returncode == 2, done.stderr
    setting = {"http": "ENGRAM_HTTP_PORT", "nats": "ENGRAM_NATS_URL", "grpc": "ENGRAM_GRPC_PORT"}[
        which
    ]
    assert f"port {taken} (set {setting}) in use by another process" in done.stderr
    assert "running" not in done.stdout
