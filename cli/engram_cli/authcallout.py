"""``engram auth-callout``: the service nats-server asks about every agent's
connection (see :mod:`engram_nats.authcallout` and docs/security.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
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
            "keys, ENGRAM_NATS_SYSTEM_URL. `engram dev` runs it when auth is on."
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
