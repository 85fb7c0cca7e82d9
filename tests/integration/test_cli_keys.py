"""``engram key …`` against a gateway that requires keys, and the other client
commands with ``--api-key`` / ``ENGRAM_API_KEY``: the key printed once, listed
without its secret, refused after revocation (exit code 4)."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rich.console import Console

from engram_cli.keys import run_key
from engram_cli.main import build_parser
from engram_cli.memory import run_memory
from engram_cli.space import run_space
from engram_cli.status import run_status
from engram_worker.worker import Worker
from tests.helpers import NatsServer, gateway_settings, running_gateway

ADMIN = "cli-admin-key-" + "k" * 20
RUN = {"key": run_key, "space": run_space, "memory": run_memory, "status": run_status}


@pytest.fixture
async def url(nats_server: NatsServer, worker: Worker) -> AsyncIterator[str]:
    settings = gateway_settings(nats_server.url, auth="required", admin_key=ADMIN)
    async with running_gateway(settings) as client:
        yield str(client.base_url).rstrip("/")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENGRAM_MEMORY_SPACE", "ENGRAM_URL", "ENGRAM_API_KEY"):
        monkeypatch.delenv(name, raising=False)


async def engram(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args(list(argv))
    code = await asyncio.to_thread(
        RUN[args.command],
        args,
        Console(file=out, color_system=None, width=200),
        Console(file=err, color_system=None, width=200),
    )
    return code, out.getvalue(), err.getvalue()


async def test_keys_from_the_cli(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    space = f"cli-{uuid.uuid4().hex[:10]}"
    # without a key: refused, exit 4, the hint says how
    code, _, err = await engram("space", "list", "--url", url)
    assert code == 4 and "API key" in err
    code, out, err = await engram(
        "space", "create", space, "--dim", "16", "--url", url, "--api-key", ADMIN
    )
    assert code == 0, err
    code, out, err = await engram(
        "key", "create", "--space", space, "--role", "write", "--url", url, "--api-key", ADMIN
    )
    assert code == 0, err
    key = out.strip()
    assert key.startswith("egk_") and "shown only now" in err
    # the scoped key through ENGRAM_API_KEY: its space works, others do not
    monkeypatch.setenv("ENGRAM_API_KEY", key)
    code, out, err = await engram(
        "memory", "remember", "hello keys", "--space", space, "--url", url, "--json"
    )
    assert code == 0, err
    code, out, err = await engram("space", "list", "--url", url, "--json")
    assert code == 0 and [s["id"] for s in json.loads(out)["spaces"]] == [space]
    code, _, err = await engram("space", "show", "default", "--url", url)
    assert code == 4 and "may not read" in err
    code, _, err = await engram("status", "--url", url, "--space", space)
    assert code in (0, 1), err  # answered (healthy or not), not refused
    code, _, err = await engram("key", "list", "--url", url)
    assert code == 4  # not an admin
    monkeypatch.delenv("ENGRAM_API_KEY")
    # listed without the secret
    code, out, err = await engram("key", "list", "--url", url, "--api-key", ADMIN, "--json")
    assert code == 0, err
    keys: list[dict[str, Any]] = json.loads(out)
    (row,) = [k for k in keys if key.startswith(f"egk_{k['id']}_")]
    assert row["spaces"] == [space] and key not in out
    code, out, _ = await engram("key", "list", "--url", url, "--api-key", ADMIN)
    assert code == 0 and row["id"] in out and key not in out
    # revoked: refused at once
    code, out, err = await engram("key", "revoke", row["id"], "--url", url, "--api-key", ADMIN)
    assert code == 0 and "revoked" in out, err
    code, _, err = await engram("space", "list", "--url", url, "--api-key", key)
    assert code == 4 and "not valid" in err
    code, _, err = await engram("key", "revoke", row["id"], "--url", url, "--api-key", ADMIN)
    assert code == 1 and "no API key" in err
    # usage
    code, _, err = await engram("key", "create", "--url", url, "--api-key", ADMIN)
    assert code == 2 and "--admin" in err
