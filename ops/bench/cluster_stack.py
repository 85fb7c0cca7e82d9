"""The processes of the cluster bench: one nats-server or a JetStream cluster of
several, any number of workers (each with its own ``ENGRAM_WORKER_ID``) and a
gateway, on free loopback ports with a throw-away directory. Workers are started,
stopped (SIGTERM, together), killed (SIGKILL) and started again by name; every
process is stopped and the directory removed when the ``with`` block ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from stack import free_port, rss_bytes

from engram_cli.devstack import start_nats_cluster, start_nats_server, wait_for_jetstream

GATEWAY_READY_TIMEOUT = 60.0
STOP_TIMEOUT = 90.0  # a graceful stop hands spaces over and writes snapshots


@dataclass
class ClusterStack:
    workdir: Path
    env: dict[str, str]  # of every engram process (the caller's ENGRAM_* left out)
    nats: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    nats_urls: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # engram processes
    worker_env: dict[str, dict[str, str]] = field(default_factory=dict)  # extra env by worker
    http_url: str = ""
    nats_monitor: int = 0  # the single nats-server's monitoring port

    # -- processes -----------------------------------------------------------

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def spawn(self, name: str, role: str, extra: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.log(name), "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "engram_cli", role],
                env=self.env | extra,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
            )
        self.procs[name] = proc
        return proc

    def start_worker(self, name: str, **extra: str) -> float:
        """Start worker ``name`` (its id; ``extra`` env on top of the stack's, kept
        for later restarts unless given again); the ``perf_counter`` at the spawn."""
        if extra:
            self.worker_env[name] = extra
        env = {"ENGRAM_WORKER_ID": name, "ENGRAM_METRICS_PORT": "0"}
        t0 = time.perf_counter()
        self.spawn(name, "worker", env | self.worker_env.get(name, {}))
        return t0

    def start_gateway(self) -> None:
        port = free_port()
        self.http_url = f"http://127.0.0.1:{port}"
        # no gRPC: the cluster bench measures HTTP only (and 7433 may be taken)
        self.spawn("gateway", "gateway", {"ENGRAM_HTTP_PORT": str(port), "ENGRAM_GRPC_PORT": "0"})
        deadline = time.monotonic() + GATEWAY_READY_TIMEOUT
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.http_url}/ready", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready after {GATEWAY_READY_TIMEOUT:g} s")

    def stop(self, names: list[str], timeout: float = STOP_TIMEOUT) -> float:
        """SIGTERM ``names`` together and wait until all exit; the seconds it took
        (a process still running after ``timeout`` is killed, and that is an error)."""
        procs = [(n, self.procs.pop(n)) for n in names]
        t0 = time.perf_counter()
        for _, proc in procs:
            proc.terminate()
        late = []
        for name, proc in procs:
            try:
                proc.wait(max(0.1, timeout - (time.perf_counter() - t0)))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                late.append(name)
        if late:
            raise RuntimeError(f"{', '.join(late)} did not stop within {timeout:g} s of SIGTERM")
        return time.perf_counter() - t0

    def kill(self, name: str) -> float:
        """``kill -9`` of ``name``; the ``perf_counter`` right after the signal."""
        proc = self.procs.pop(name)
        os.kill(proc.pid, signal.SIGKILL)
        t = time.perf_counter()
        proc.wait(10)
        return t

    def restart_nats(self, timeout: float = 600.0) -> float:
        """Stop the single nats-server (SIGTERM) and start it again on the same
        store; seconds from the start until JetStream is ready (``/healthz``)."""
        [(name, proc)] = self.nats
        proc.terminate()
        proc.wait(60)
        port = int(self.nats_urls[0].rsplit(":", 1)[1])
        t0 = time.perf_counter()
        server = start_nats_server(
            self.workdir / "nats", port, self.nats_monitor, log_file=self.log(name)
        )
        self.nats = [(name, server)]
        wait_for_jetstream([self.nats_monitor], timeout)
        return time.perf_counter() - t0

    def workers(self) -> list[str]:
        return sorted(n for n in self.procs if n != "gateway")

    def rss(self, name: str) -> int:
        return rss_bytes(self.procs[name].pid)

    def nats_rss(self) -> list[int]:
        return [rss_bytes(proc.pid) for _, proc in self.nats]

    def check_alive(self) -> None:
        for name, proc in list(self.procs.items()) + self.nats:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} (log: {self.log(name)})")

    def close(self, failed: bool) -> None:
        if failed:
            for name in list(self.procs) + [n for n, _ in self.nats]:
                print(f"--- last lines of {name}.log ---\n{tail(self.log(name))}", file=sys.stderr)
        # gateway and workers first (latest first), the brokers they drain into last
        for name, proc in list(reversed(self.procs.items())) + self.nats:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    print(f"{name} did not stop in 15 s; killing it", file=sys.stderr)
                    print(
                        f"--- last lines of {name}.log ---\n{tail(self.log(name))}", file=sys.stderr
                    )
                    proc.kill()
                    proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def cluster_stack(
    prefix: str, nats_nodes: int = 1, gateway: bool = True, **extra: str
) -> Iterator[ClusterStack]:
    """nats-server (``nats_nodes`` > 1: a JetStream cluster, streams with that many
    replicas up to 3) and a gateway; workers are started by the caller. Everything
    is stopped and removed on exit, error or Ctrl-C."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    stack = ClusterStack(workdir, env)
    failed = False
    try:
        if nats_nodes == 1:
            port = free_port()
            monitor = free_port()
            server = start_nats_server(
                workdir / "nats", port, monitor, log_file=stack.log("nats-server")
            )
            stack.nats_monitor = monitor
            stack.nats.append(("nats-server", server))
            stack.nats_urls = [f"nats://127.0.0.1:{port}"]
        else:
            nodes = start_nats_cluster(workdir, nats_nodes, 0, name="bench")
            stack.nats = [(f"n{i + 1}", proc) for i, (_, proc) in enumerate(nodes)]
            stack.nats_urls = [node.url for node, _ in nodes]
            extra = {"ENGRAM_STREAM_REPLICAS": str(min(3, nats_nodes))} | extra
        env |= {
            "ENGRAM_NATS_URL": ",".join(stack.nats_urls),
            "ENGRAM_HTTP_HOST": "127.0.0.1",
            "ENGRAM_DATA_DIR": str(workdir / "data"),
            **extra,
        }
        if gateway:
            stack.start_gateway()
        yield stack
    except Exception:
        failed = True
        raise
    finally:
        stack.close(failed)
