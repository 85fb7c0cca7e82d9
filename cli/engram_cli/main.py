"""``engram``: run the processes (gateway, worker, dev stack)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_gateway(_: argparse.Namespace) -> int:
    from engram_contract.settings import GatewaySettings
    from engram_gateway.app import main

    settings = GatewaySettings()
    _logging(settings.log_level)
    main(settings)
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    from engram_contract.settings import WorkerSettings
    from engram_nats.membership import WorkerIdTaken
    from engram_worker.worker import main

    settings = WorkerSettings()
    _logging(settings.log_level)
    try:
        try:  # uvloop (a dependency off Windows), as the gateway: less CPU per message
            import uvloop
        except ImportError:
            asyncio.run(main(settings))
        else:
            uvloop.run(main(settings))
    except WorkerIdTaken as exc:
        print(f"engram worker: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from engram_cli.devstack import Topology, run_dev_stack
    from engram_contract.settings import GatewaySettings

    settings = GatewaySettings()
    _logging(settings.log_level)
    topology = Topology(args.nats_nodes, args.workers, args.gateways)
    try:
        topology.check()
    except ValueError as exc:
        print(f"engram dev: {exc}", file=sys.stderr)
        return 2
    return run_dev_stack(settings, topology)


def cmd_replay(args: argparse.Namespace) -> int:
    from engram_cli.replay import run_replay

    return run_replay(args)


def cmd_status(args: argparse.Namespace) -> int:
    from engram_cli.status import run_status

    return run_status(args)


def cmd_space(args: argparse.Namespace) -> int:
    from engram_cli.space import run_space

    return run_space(args)


def cmd_key(args: argparse.Namespace) -> int:
    from engram_cli.keys import run_key

    return run_key(args)


def cmd_memory(args: argparse.Namespace) -> int:
    from engram_cli.memory import run_memory

    return run_memory(args)


def cmd_transfer(args: argparse.Namespace) -> int:
    from engram_cli import transfer

    run = {
        "export": transfer.run_export,
        "import": transfer.run_import,
        "migrate": transfer.run_migrate,
    }[args.command]
    return run(args)


def cmd_auth_callout(args: argparse.Namespace) -> int:
    from engram_cli.authcallout import run_auth_callout

    return run_auth_callout(args)


def cmd_mcp(args: argparse.Namespace) -> int:
    from engram_cli.mcpcli import run_mcp

    return run_mcp(args)


def cmd_nats_auth(args: argparse.Namespace) -> int:
    from engram_cli.authcallout import run_nats_auth

    return run_nats_auth(args)


def _add_auth_callout(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from engram_cli.authcallout import add_nats_auth_parser, add_parser

    add_parser(sub).set_defaults(func=cmd_auth_callout)
    add_nats_auth_parser(sub).set_defaults(func=cmd_nats_auth)


def build_parser() -> argparse.ArgumentParser:
    # here, not at the top: the client commands' modules import the SDK and rich
    from engram_cli.keys import add_parser as key_parser
    from engram_cli.memory import add_parser as memory_parser
    from engram_cli.space import add_parser as space_parser
    from engram_cli.status import add_parser as status_parser
    from engram_cli.transfer import add_parsers as transfer_parsers

    parser = argparse.ArgumentParser(
        prog="engram", description="Engram: cognitive memory spaces for AI agents on NATS."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "gateway",
        help="run the HTTP gateway (ENGRAM_HTTP_HOST/PORT, ENGRAM_HTTP_WORKERS processes)",
    ).set_defaults(func=cmd_gateway)
    sub.add_parser("worker", help="run a worker that hosts spaces").set_defaults(func=cmd_worker)
    dev = sub.add_parser(
        "dev",
        help="run nats-server (JetStream, data in ENGRAM_DATA_DIR), a gateway and a worker",
        description="Run the whole stack on this machine; one Ctrl-C stops it all. With "
        "--nats-nodes N > 1 the nats-servers form one JetStream cluster on loopback "
        "(new streams get min(3, N) replicas unless ENGRAM_STREAM_REPLICAS says otherwise).",
    )
    dev.add_argument("--nats-nodes", type=int, default=1, metavar="N", help="nats-servers")
    dev.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes")
    dev.add_argument(
        "--gateways", type=int, default=1, metavar="N", help="gateways, each on its own port"
    )
    dev.set_defaults(func=cmd_dev)
    replay = sub.add_parser(
        "replay",
        help="rebuild a space from its WAL alone, write a fresh snapshot, reload the workers",
        description="Fold the space's stream from --from-seq (default: the start) into a new "
        "state, index it, write it as the space's snapshot and ask the workers hosting the "
        "space to serve it. The snapshot in the store is ignored. With --from-seq N the "
        "rebuilt state holds only what the WAL says from seq N on.",
    )
    replay.add_argument("space", help="the space id")
    replay.add_argument("--from-seq", type=int, default=1, metavar="N", help="first seq to fold")
    replay.add_argument(
        "--dry-run", action="store_true", help="fold and index, report, write nothing"
    )
    replay.add_argument("--json", action="store_true", help="print the summary as JSON")
    replay.add_argument("--nats-url", help="NATS URL (default: ENGRAM_NATS_URL)")
    replay.add_argument(
        "--reload-wait", type=float, default=30.0, metavar="S", help="seconds to wait for workers"
    )
    replay.set_defaults(func=cmd_replay)
    _add_auth_callout(sub)
    from engram_cli.mcpcli import add_parser as mcp_parser

    mcp_parser(sub).set_defaults(func=cmd_mcp)
    status_parser(sub).set_defaults(func=cmd_status)
    space_parser(sub).set_defaults(func=cmd_space)
    memory_parser(sub).set_defaults(func=cmd_memory)
    key_parser(sub).set_defaults(func=cmd_key)
    for p in transfer_parsers(sub).values():
        p.set_defaults(func=cmd_transfer)
    return parser


#: the long-running processes: ``engram worker`` and ``engram gateway`` take no
#: arguments, and start without importing the client commands' modules (the SDK,
#: httpx, rich: ~0.5 s of a worker's start)
_PROCESSES = {"worker": cmd_worker, "gateway": cmd_gateway, "auth-callout": cmd_auth_callout}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0] in _PROCESSES:
        return _PROCESSES[argv[0]](argparse.Namespace(command=argv[0]))
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
