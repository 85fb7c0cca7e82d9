"""``engram space …`` and ``engram memory …`` against a real gateway and worker:
the output (``--json`` parsed, tables grepped), the exit codes, and where the
memory commands take their space from."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engram_cli.main import build_parser
from engram_cli.memory import MISSING_SPACE, run_memory
from engram_cli.space import run_space
from engram_worker.worker import Worker
from tests.helpers import NatsServer, free_port, gateway_settings, running_gateway


@pytest.fixture
async def url(nats_server: NatsServer, worker: Worker) -> AsyncIterator[str]:
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        yield str(client.base_url).rstrip("/")


@pytest.fixture(autouse=True)
def no_space_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENGRAM_MEMORY_SPACE", "ENGRAM_DEFAULT_SPACE", "ENGRAM_URL"):
        monkeypatch.delenv(name, raising=False)


async def engram(*argv: str) -> tuple[int, str, str]:
    """Run ``engram ARGV`` in a thread (the gateway serves in this loop): exit
    code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args(list(argv))
    run = run_space if args.command == "space" else run_memory
    code = await asyncio.to_thread(
        run, args, Console(file=out, color_system=None), Console(file=err, color_system=None)
    )
    return code, out.getvalue(), err.getvalue()


async def ok_json(*argv: str) -> Any:
    code, out, err = await engram(*argv, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_space_create_list_show_delete(url: str, space_id: str) -> None:
    rec = await ok_json("space", "create", space_id, "--dim", "32", "--url", url)
    assert (rec["id"], rec["dim"], rec["status"]) == (space_id, 32, "active")
    listed = await ok_json("space", "list", "--url", url)
    assert space_id in {s["id"] for s in listed["spaces"]}

    code, out, _ = await engram("space", "list", "--url", url)
    assert code == 0 and any(space_id in line for line in out.splitlines())

    await ok_json("memory", "remember", "hello", "--space", space_id, "--url", url)
    shown = await ok_json("space", "show", space_id, "--url", url)
    assert (shown["id"], shown["memories"]) == (space_id, 1)
    code, out, _ = await engram("space", "show", space_id, "--url", url)
    (row,) = [ln for ln in out.splitlines() if space_id in ln and "│" in ln]
    assert "32" in row and "1" in row

    code, _, err = await engram("space", "create", space_id, "--dim", "64", "--url", url)
    assert code == 1 and "conflict" in err.lower()

    # not on a terminal: nobody can be asked, so nothing is deleted without --yes
    code, _, err = await engram("space", "delete", space_id, "--url", url)
    assert code == 2 and "without --yes" in err
    assert (await ok_json("space", "show", space_id, "--url", url))["memories"] == 1
    assert await ok_json("space", "delete", space_id, "--yes", "--url", url) == {
        "id": space_id,
        "status": "deleted",
    }
    code, out, err = await engram("space", "show", space_id, "--url", url)
    assert code == 1 and out == "" and "not found" in err.lower() and space_id in err
    code, _, err = await engram("space", "delete", space_id, "--yes", "--url", url)
    assert code == 1


async def test_memory_commands(url: str, space_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_URL", url)  # the URL from the environment
    s = ("--space", space_id)
    pet = await ok_json("memory", "remember", "the user has a cat named Tom", "--id", "pet", *s)
    assert pet["ids"] == ["pet"] and pet["seq"] >= 1
    await ok_json("memory", "remember", "the vet is Dr. Jones", "--id", "vet", "-t", "health", *s)

    recalled = await ok_json("memory", "recall", "cat named Tom", "-k", "1", *s)
    assert recalled["results"][0]["memory"]["id"] == "pet"
    code, out, _ = await engram("memory", "recall", "cat", "-k", "2", *s)
    assert code == 0 and any("pet" in ln and "Tom" in ln for ln in out.splitlines())

    got = await ok_json("memory", "get", "vet", *s)
    assert (got["content"], got["tags"]) == ("the vet is Dr. Jones", ["health"])

    page = await ok_json("memory", "list", "--limit", "1", *s)
    assert [m["id"] for m in page["memories"]] == ["pet"] and page["next_cursor"]
    every = await ok_json("memory", "list", "--all", *s)
    assert [m["id"] for m in every["memories"]] == ["pet", "vet"]

    assert (await ok_json("memory", "link", "pet", "vet", "--weight", "0.8", *s))["seq"] > 0
    code, _, err = await engram("memory", "link", "pet", "ghost", *s)
    assert code == 1 and "ghost" in err

    assert (await ok_json("memory", "forget", "pet", *s))["seq"] > 0
    code, out, err = await engram("memory", "get", "pet", "--json", *s)
    assert code == 1 and out == "" and "not found" in err.lower()

    code, _, err = await engram("memory", "remember", "x", "--confidence", "3", *s)
    assert code == 2 and "confidence" in err


async def test_memory_forget_many(
    url: str, space_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = ("--space", space_id, "--url", url)
    await ok_json("space", "create", space_id, "--dim", "8", "--url", url)
    lines = "\n".join(f'{{"id": "m{i}", "content": "memory {i}"}}' for i in range(1200))
    path = tmp_path / "memories.ndjson"
    path.write_text(lines + "\n")
    assert (await ok_json("memory", "remember", "--file", str(path), *s))["count"] == 1200

    # several IDs on the command line
    assert (await ok_json("memory", "forget", "m0", "m1", "ghost", *s))["count"] == 3
    code, out, _ = await engram("memory", "forget", "m2", "m3", *s)
    assert code == 0 and "forgot 2 memories" in out

    # a file of ids (more than one request), and stdin
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"m{i}" for i in range(4, 1100)) + "\n\n")
    forgot = await ok_json("memory", "forget", "--file", str(ids), *s)
    assert forgot["count"] == 1096 and forgot["seq"] > 0
    monkeypatch.setattr("sys.stdin", io.StringIO("m1100\nm1101\n"))
    assert (await ok_json("memory", "forget", "--file", "-", *s))["count"] == 2
    # the worker erases each forgotten memory's message as it folds: wait for it
    for _ in range(300):
        code, out, err = await engram("memory", "list", "--all", "--json", *s)
        if code != 3:
            break
        await asyncio.sleep(0.1)
    assert code == 0, err
    every = json.loads(out)
    assert [m["id"] for m in every["memories"]] == [f"m{i}" for i in range(1102, 1200)]

    # a bad id is named by its line and nothing is forgotten
    ids.write_text("m1102\nnot valid!\n")
    code, _, err = await engram("memory", "forget", "--file", str(ids), *s)
    assert code == 2 and "line 2" in err
    code, _, err = await engram("memory", "forget", *s)
    assert code == 2 and "--file" in err
    assert (await ok_json("memory", "get", "m1102", *s))["id"] == "m1102"
    # the space must exist
    code, _, err = await engram("memory", "forget", "m1", "--space", f"{space_id}-x", "--url", url)
    assert code == 1 and "not found" in err.lower()


async def test_space_comes_from_flag_then_env_then_default(
    url: str, new_space: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag, env, default = new_space("flag"), new_space("env"), new_space("dflt")
    code, out, err = await engram("memory", "remember", "x", "--url", url)
    assert code == 2 and out == ""
    assert MISSING_SPACE in err
    for needle in ("--space", "ENGRAM_MEMORY_SPACE", "ENGRAM_DEFAULT_SPACE"):
        assert needle in err

    monkeypatch.setenv("ENGRAM_DEFAULT_SPACE", default)
    await ok_json("memory", "remember", "to the default", "--id", "m", "--url", url)
    monkeypatch.setenv("ENGRAM_MEMORY_SPACE", env)
    await ok_json("memory", "remember", "to the env space", "--id", "m", "--url", url)
    await ok_json("memory", "remember", "to the flag space", "--id", "m", "--url", url, "-s", flag)
    for space, content in ((default, "default"), (env, "env space"), (flag, "flag space")):
        got = await ok_json("memory", "get", "m", "--url", url, "--space", space)
        assert got["content"].endswith(content)

    code, _, err = await engram("memory", "list", "--url", url, "--space", "Bad Space")
    assert code == 2 and "invalid" in err


async def test_bulk_remember_from_ndjson_and_text(url: str, space_id: str, tmp_path: Path) -> None:
    s = ("--space", space_id, "--url", url)
    ndjson = tmp_path / "memories.ndjson"
    ndjson.write_text(
        "\n".join(json.dumps({"id": f"n{i}", "content": f"fact number {i}"}) for i in range(25))
        + "\n\n"
    )
    loaded = await ok_json("memory", "remember", "--file", str(ndjson), "--batch", "10", *s)
    assert loaded["count"] == 25 and loaded["ids"][:2] == ["n0", "n1"]

    text = tmp_path / "notes.txt"
    text.write_text("first note\nsecond note\n")
    code, out, _ = await engram("memory", "remember", "-f", str(text), "-t", "notes", *s)
    assert code == 0 and "remembered 2 memories" in out
    every = await ok_json("memory", "list", "--all", *s)
    assert len(every["memories"]) == 27
    assert every["memories"][-1]["tags"] == ["notes"]

    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"content": "fine"}\n{"content": "bad", "confidence": 7}\n')
    code, _, err = await engram("memory", "remember", "--file", str(bad), *s)
    assert code == 2 and "line 2.confidence" in err
    assert len((await ok_json("memory", "list", "--all", *s))["memories"]) == 27


async def test_unreachable_gateway_exits_3(space_id: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = await engram("space", "list", "--url", url, "--timeout", "5")
    assert code == 3 and out == "" and url in err
    code, _, err = await engram("memory", "get", "x", "--url", url, "--space", space_id)
    assert code == 3 and err.startswith("error: ")
