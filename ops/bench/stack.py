"""The stack the bench measures: nats-server, worker and gateway on free loopback ports
with a throw-away data directory, and the CPU time of each process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from measure import Cpu

from engram_cli.devstack import start_nats_server

# ---------------------------------------------------------------------------
# the stack: nats-server, worker, gateway


@dataclass
class Stack:
    workdir: Path
    nats_url: str
    http_url: str
    procs: list[tuple[str, subprocess.Popen[bytes]]]
    stopped: list[str] = field(default_factory=list)  # stopped on purpose during the run
    env: dict[str, str] = field(default_factory=dict)  # of the engram processes
    grpc_target: str = ""  # the first gateway's gRPC API (host:port)

    def start_gateway(self, name: str, workers: int) -> str:
        """Another gateway (``workers`` processes) on a free port, beside the first
        one (same broker and worker); its URL once it is ready. Stop it with
        :meth:`stop_gracefully`."""
        url = f"http://127.0.0.1:{free_port()}"
        port = url.rsplit(":", 1)[1]
        env = self.env | {
            "ENGRAM_HTTP_PORT": port,
            "ENGRAM_HTTP_WORKERS": str(workers),
            "ENGRAM_GRPC_PORT": str(free_port()),  # its own (the first one's is taken)
        }
        _spawn(self, "gateway", env, name=name)
        _wait_ready(self, url)
        return url

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def stop_gracefully(self, name: str, timeout: float) -> float:
        """SIGTERM one process and wait until it exits; returns the seconds it took."""
        proc = dict(self.procs)[name]
        t0 = time.perf_counter()
        proc.terminate()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise RuntimeError(f"{name} did not stop within {timeout:g} s") from None
        seconds = time.perf_counter() - t0
        self.procs.remove((name, proc))
        self.stopped.append(name)
        if code != 0:
            raise RuntimeError(f"{name} exited with {code} on SIGTERM")
        return seconds

    def pid(self, name: str) -> int:
        return dict(self.procs)[name].pid

    def restart(self, name: str) -> float:
        """Start a process stopped on purpose again (same settings); returns the
        ``perf_counter`` just before it was spawned."""
        self.stopped.remove(name)
        t0 = time.perf_counter()
        _spawn(self, name, self.env)
        return t0

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}")

    def cpu(self) -> Cpu:
        """CPU seconds so far of every process of the stack and of this one."""
        used = {name: process_cpu_s(proc.pid) for name, proc in self.procs}
        return {k: v for k, v in used.items() if v == v} | {"bench": time.process_time()}


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) and of its living
    child processes (a gateway with several processes); NaN without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = 0.0
    for child in _children(pid):
        cpu = process_cpu_s(child)
        children += cpu if cpu == cpu else 0.0
    return own + children


def _children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    pids: list[int] = []
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            pids.extend(int(p) for p in (task / "children").read_text().split())
    return pids


def rss_bytes(pid: int) -> int:
    """A process's resident set size (``VmRSS`` in ``/proc/<pid>/status``); 0 without /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_since(before: Cpu, after: Cpu) -> Cpu:
    return {k: after[k] - before[k] for k in after if k in before}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(stack: Stack, role: str, env: dict[str, str], name: str | None = None) -> None:
    name = name or role
    with open(stack.log(name), "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engram_cli", role],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
        )
    stack.procs.append((name, proc))


def _stop(name: str, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop in 10 s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait(5)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(stack: Stack, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"gateway not ready after {timeout:g} s")


def new_stack(prefix: str, **extra: str) -> tuple[Stack, int]:
    """A stack's work dir, free loopback ports and environment (the caller's
    ``ENGRAM_*`` left out, ``extra`` added); its NATS port. Nothing started yet."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    nats_port, http_port, grpc_port = free_port(), free_port(), free_port()
    stack = Stack(workdir, f"nats://127.0.0.1:{nats_port}", f"http://127.0.0.1:{http_port}", [])
    stack.grpc_target = f"127.0.0.1:{grpc_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {
        "ENGRAM_NATS_URL": stack.nats_url,
        "ENGRAM_HTTP_HOST": "127.0.0.1",
        "ENGRAM_HTTP_PORT": str(http_port),
        "ENGRAM_GRPC_PORT": str(grpc_port),
        "ENGRAM_DATA_DIR": str(workdir / "data"),
        **extra,
    }
    stack.env = env
    return stack, nats_port


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    """nats-server + worker + gateway on loopback; all stopped and removed on exit."""
    stack, nats_port = new_stack("engram-bench-")
    workdir, env = stack.workdir, stack.env
    try:
        server = start_nats_server(workdir / "nats", nats_port, log_file=stack.log("nats-server"))
        stack.procs.append(("nats-server", server))
        _spawn(stack, "worker", env)
        _spawn(stack, "gateway", env)
        _wait_ready(stack, stack.http_url)
        yield stack
    except Exception:
        for name in [n for n, _ in stack.procs] + stack.stopped:
            print(f"--- last lines of {name}.log ---\n{_tail(stack.log(name))}", file=sys.stderr)
        raise
    finally:
        for name, proc in reversed(stack.procs):
            _stop(name, proc)
        shutil.rmtree(workdir, ignore_errors=True)
