"""``engram auth-callout``: the service nats-server asks about every agent's
connection (see :mod:`engram_nats.authcallout` and docs/security.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    return sub.add_parser(  # type: ignore[no-any-return]
        "auth-callout",
        help="answer nats-server's auth callout: agents connect with their API key",
        description=(
            "Checks the API key an agent presents as its NATS connection token and "
            "answers with a NATS user limited to the key's spaces. Needs "
            "ENGRAM_NATS_ISSUER_SEED (the auth_callout issuer's seed), the service "
            "user (ENGRAM_NATS_USER/ENGRAM_NATS_PASSWORD) and, to disconnect revoked "
            "keys, ENGRAM_NATS_SYSTEM_URL; or ENGRAM_NATS_AUTH_DIR, the directory "
            "`engram nats-auth init` wrote, for all three. `engram dev` runs it when "
            "auth is on."
        ),
    )


def run_auth_callout(_: argparse.Namespace) -> int:
    from engram_nats.authcallout import CalloutSettings, run

    settings = CalloutSettings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(run(settings))
    except ValueError as exc:
        print(f"engram auth-callout: {exc}", file=sys.stderr)
        return 2
    return 0


def add_nats_auth_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "nats-auth",
        help="write the NATS auth setup of a deployment (issuer key, service users)",
        description=(
            "`engram nats-auth init DIR` writes, once, what a NATS whose agents "
            "connect with API keys needs: the auth callout's issuer nkey, the service "
            "users' passwords (files of mode 0600) and nats-auth.conf, the part of the "
            "nats-server configuration to `include` on every node. Existing secrets are "
            "kept: running it again only rewrites nats-auth.conf. Engram processes find "
            "them through ENGRAM_NATS_AUTH_DIR=DIR (docs/security.md)."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True)
    init = actions.add_parser("init", help="write DIR's secrets (kept if there) and config")
    init.add_argument("directory", type=Path, metavar="DIR")
    return parser  # type: ignore[no-any-return]


def run_nats_auth(args: argparse.Namespace) -> int:
    from engram_nats.callout_setup import config_path, init

    try:
        secrets = init(args.directory)
    except (OSError, ValueError) as exc:
        print(f"engram nats-auth: {exc}", file=sys.stderr)
        return 2
    print(f"{config_path(args.directory)}: include it in every nats-server's configuration")
    print(f"auth callout issuer: {secrets.issuer_public}")
    print(f"Engram processes: ENGRAM_NATS_AUTH_DIR={args.directory}")
    return 0
