"""``engram export`` / ``import`` / ``migrate`` against a real gateway and worker:
a copy keeps ids and records, ``--tag`` copies only the tagged memories,
``--move`` leaves the source without what it moved (and only what it moved)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from engram_cli import transfer as transfer_cli
from engram_cli.main import build_parser

Client = httpx.AsyncClient


async def engram(*argv: str) -> tuple[int, str, str]:
    """Run ``engram ARGV`` in a thread (the gateway serves in this loop)."""
    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args(list(argv))
    run = {
        "export": transfer_cli.run_export,
        "import": transfer_cli.run_import,
        "migrate": transfer_cli.run_migrate,
    }[args.command]
    code = await asyncio.to_thread(
        run, args, Console(file=out, color_system=None), Console(file=err, color_system=None)
    )
    return code, out.getvalue(), err.getvalue()


def url_of(client: Client) -> str:
    return str(client.base_url).rstrip("/")


async def fill(client: Client, space: str) -> None:
    memories = [
        {
            "id": f"m{i}",
            "content": f"memory number {i}",
            "tags": ["tenant-x"] if i % 3 == 0 else ["other"],
            "metadata": {"i": str(i)},
        }
        for i in range(12)
    ]
    r = await client.post(f"/api/v1/spaces/{space}/memories", json={"memories": memories})
    assert r.status_code == 202, r.text
    r = await client.post(
        f"/api/v1/spaces/{space}/links", json={"source": "m0", "target": "m3", "weight": 0.7}
    )
    assert r.status_code == 202, r.text


async def ids(client: Client, space: str) -> list[str]:
    r = await client.get(f"/api/v1/spaces/{space}/memories", params={"limit": 1000})
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["memories"]]


async def records(client: Client, space: str) -> dict[str, Any]:
    r = await client.get(
        f"/api/v1/spaces/{space}/memories", params={"limit": 1000, "include_embedding": "true"}
    )
    keep = ("id", "content", "confidence", "tags", "metadata", "occurred_at", "kind", "embedding")
    return {m["id"]: {k: m[k] for k in keep} for m in r.json()["memories"]}


async def test_migrate_copies(client: Client, new_space: Any) -> None:
    a, b = new_space("src"), new_space("dst")
    await fill(client, a)
    code, out, err = await engram(
        "migrate", "--from", a, "--to", b, "--url", url_of(client), "--json"
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["memories"] == 12 and summary["links"] == 1 and summary["forgotten"] == 0
    assert summary["created"] is True
    assert await ids(client, b) == await ids(client, a) == [f"m{i}" for i in range(12)]
    assert await records(client, b) == await records(client, a)


async def test_migrate_by_tag_and_move(client: Client, new_space: Any) -> None:
    a, b = new_space("src"), new_space("dst")
    await fill(client, a)
    code, out, err = await engram(
        "migrate",
        "--from",
        a,
        "--to",
        b,
        "--tag",
        "tenant-x",
        "--move",
        "--url",
        url_of(client),
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    moved = [f"m{i}" for i in range(0, 12, 3)]
    assert summary["memories"] == len(moved) == summary["forgotten"]
    assert summary["links"] == 1  # m0 — m3: both tagged
    assert await ids(client, b) == moved
    assert await ids(client, a) == [f"m{i}" for i in range(12) if i % 3]


async def test_move_of_thousands_forgets_in_batches(client: Client, new_space: Any) -> None:
    a, b = new_space("src"), new_space("dst")
    r = await client.post("/api/v1/spaces", json={"id": a, "dim": 8})
    assert r.status_code == 201, r.text
    n = 2500
    for start in range(0, n + 1, 1000):  # n tagged, and one more that stays
        batch = [
            {
                "id": f"m{i}",
                "content": f"memory {i}",
                "embedding": [float(i % 7 == j) + 0.1 for j in range(8)],
                "tags": ["move"] if i < n else ["stay"],
            }
            for i in range(start, min(start + 1000, n + 1))
        ]
        r = await client.post(f"/api/v1/spaces/{a}/memories", json={"memories": batch})
        assert r.status_code == 202, r.text
    code, out, err = await engram(
        "migrate",
        "--from",
        a,
        "--to",
        b,
        "--tag",
        "move",
        "--move",
        "--url",
        url_of(client),
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["memories"] == summary["forgotten"] == n
    # the worker erases each forgotten memory's WAL message as it folds the command
    # (a JetStream round trip each): a read may outwait ENGRAM_APPLY_WAIT_TIMEOUT
    for _ in range(300):
        r = await client.get(f"/api/v1/spaces/{a}")
        if r.status_code != 504:
            break
        await asyncio.sleep(0.1)
    assert r.status_code == 200, r.text
    assert r.json()["memories"] == 1
    assert await ids(client, a) == [f"m{n}"]
    r = await client.get(f"/api/v1/spaces/{b}")
    assert r.json()["memories"] == n


async def test_export_then_import_files(client: Client, new_space: Any, tmp_path: Path) -> None:
    a, b = new_space("src"), new_space("dst")
    await fill(client, a)
    path = tmp_path / "a.ndjson"
    code, out, err = await engram(
        "export", "--space", a, "-o", str(path), "--url", url_of(client), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["memories"] == 12
    assert len(path.read_text().splitlines()) == 14  # header, 12 memories, end
    # the space must exist unless --create
    code, _, err = await engram("import", "--space", b, str(path), "--url", url_of(client))
    assert code == 1 and "404" in err
    code, out, err = await engram(
        "import", "--space", b, "--create", str(path), "--url", url_of(client), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["memories"] == 12
    assert await records(client, b) == await records(client, a)


async def test_a_failed_export_leaves_no_file_and_a_closed_pipe_ends_quietly(
    client: Client, new_space: Any, tmp_path: Path
) -> None:
    missing = new_space("missing")
    fresh, kept = tmp_path / "fresh.ndjson", tmp_path / "kept.ndjson"
    kept.write_text("an earlier export\n")
    for path in (fresh, kept):
        code, _, err = await engram(
            "export", "--space", missing, "-o", str(path), "--url", url_of(client)
        )
        assert code == 1 and "not found" in err.lower(), err
    assert not fresh.exists()
    assert kept.read_text() == "an earlier export\n"
    assert sorted(os.listdir(tmp_path)) == ["kept.ndjson"]  # no temporary left

    # `engram export … | head`: the reader is gone before the first line
    a = new_space("piped")
    await fill(client, a)
    read, write = os.pipe()
    os.close(read)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engram_cli", "export", "--space", a, "--url", url_of(client),
        stdout=write, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    os.close(write)
    _, said = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 141, said  # as if killed by SIGPIPE
    assert b"Traceback" not in said and b"BrokenPipe" not in said, said


async def test_unreachable_gateway_exits_2(new_space: Any) -> None:
    code, _, err = await engram("export", "--space", new_space("x"), "--url", "http://127.0.0.1:9")
    assert code == 2 and "cannot reach" in err
