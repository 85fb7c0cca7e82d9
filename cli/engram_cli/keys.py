"""``engram key create|list|revoke``: API keys, through the gateway's admin routes
(``/api/v1/keys``; the key that runs them must be an admin's, or none on a
gateway that does not require keys). A new key is printed once: only its hash
is stored.

Exit codes: see :mod:`engram_cli.errors`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engram_cli.errors import OK, UNAVAILABLE, USAGE, error, report
from engram_cli.space import add_key_option, gateway_key, gateway_url, wide
from engram_client.http_transport import key_headers, problem_error


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> httpx.Response:
    url = gateway_url(args).rstrip("/")
    return httpx.request(
        method,
        f"{url}/api/v1/keys{path}",
        json=body,
        headers=key_headers(gateway_key(args)),
        timeout=args.timeout,
    )


def _create(args: argparse.Namespace, out: Console, err: Console) -> int | httpx.Response:
    if args.admin == bool(args.space):
        error(err, "give either --admin or at least one --space (with --role)")
        return USAGE
    body: dict[str, Any] = {"label": args.label or ""}
    if args.admin:
        body["admin"] = True
    else:
        body |= {"spaces": args.space, "role": args.role}
    r = _call(args, "POST", "", body)
    if r.status_code != 201:
        return r
    doc = r.json()
    if args.json:
        out.out(json.dumps(doc, indent=2), highlight=False)
        return OK
    scope = "all spaces" if doc["role"] == "admin" else ", ".join(doc["spaces"])
    out.out(doc["key"], highlight=False)
    err.print(
        f"key {doc['id']}: {doc['role']} on {escape(scope)}. It is shown only now: store it "
        "(e.g. ENGRAM_API_KEY); only its hash is kept.",
        highlight=False,
        soft_wrap=True,
    )
    return OK


def _list(args: argparse.Namespace, out: Console, _: Console) -> int | httpx.Response:
    r = _call(args, "GET", "")
    if r.status_code != 200:
        return r
    keys = r.json()["keys"]
    if args.json:
        out.out(json.dumps(keys, indent=2), highlight=False)
        return OK
    table = Table(title="Engram API keys", title_justify="left")
    for name in ("id", "role", "spaces", "label", "created", "last used"):
        table.add_column(name, no_wrap=name != "spaces")
    for k in keys:
        table.add_row(
            k["id"],
            k["role"],
            "(all)" if k["role"] == "admin" else ", ".join(k["spaces"]),
            escape(k.get("label") or ""),
            k["created_at"][:19].replace("T", " "),
            (k.get("last_used_at") or "never")[:19].replace("T", " "),
        )
    wide(out, table)
    return OK


def _revoke(args: argparse.Namespace, out: Console, _: Console) -> int | httpx.Response:
    r = _call(args, "DELETE", f"/{args.id}")
    if r.status_code != 204:
        return r
    if args.json:
        out.out(json.dumps({"id": args.id, "revoked": True}), highlight=False)
    else:
        out.print(f"revoked key {escape(args.id)}", highlight=False)
    return OK


_COMMANDS = {"create": _create, "list": _list, "revoke": _revoke}


def run_key(
    args: argparse.Namespace, out: Console | None = None, err: Console | None = None
) -> int:
    out = out or Console()
    err = err or Console(stderr=True)
    try:
        result = _COMMANDS[args.key_command](args, out, err)
    except httpx.HTTPError as exc:
        error(err, f"cannot reach the gateway at {gateway_url(args)}: {exc or type(exc).__name__}")
        return UNAVAILABLE
    if isinstance(result, int):
        return result
    return report(err, problem_error(result, result.content))


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``key`` to the ``engram`` subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "key",
        help="create, list and revoke API keys (admin)",
        description="API keys for the gateway (Authorization: Bearer) and for agents on NATS "
        "(the connection token). A key is scoped to spaces with a role (read: get, list, "
        "recall, export, events, status; write: also remember, forget, link, import, "
        "consolidate) or is an admin key (everything).",
    )
    keys = p.add_subparsers(dest="key_command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="the gateway's base URL (default: ENGRAM_URL)")
    common.add_argument("--json", action="store_true", help="print JSON on stdout")
    common.add_argument("--timeout", type=float, default=30.0, metavar="S")
    add_key_option(common)
    create = keys.add_parser("create", parents=[common], help="create a key and print it (once)")
    create.add_argument(
        "--space", action="append", default=[], metavar="S", help="a space it may touch (repeat)"
    )
    create.add_argument("--role", choices=("read", "write"), default="read")
    create.add_argument("--admin", action="store_true", help="an admin key (all spaces, keys)")
    create.add_argument("--label", default="", help="a note shown in `engram key list`")
    keys.add_parser("list", parents=[common], help="list keys (never their secrets)")
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key by its id")
    revoke.add_argument("id", help="the key's id (from `engram key list`)")
    return p
