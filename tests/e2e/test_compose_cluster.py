"""The docker-compose cluster end to end (3 NATS nodes, 3 workers with two
replicas of each space, 2 gateways): remember through one gateway, recall
through the other, kill a worker, recall again. Needs a Docker engine: skipped,
with the reason, where none answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if info.returncode != 0:
        reason = (info.stderr or info.stdout).strip().splitlines()
        return f"no Docker engine answers ({reason[-1] if reason else 'docker info failed'})"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_docker_problem() is not None, reason=str(_docker_problem())),
]


ADMIN_KEY = "e2e-admin-key-0123456789"


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from testcontainers.compose import DockerCompose

    os.environ.setdefault("ENGRAM_ADMIN_KEY", ADMIN_KEY)  # compose requires keys
    compose = DockerCompose(ROOT, compose_file_name="docker-compose.yml", build=True, wait=False)
    compose.start()
    try:
        for port in (7432, 7442):
            _wait_ready(f"http://127.0.0.1:{port}")
        yield compose
    finally:
        compose.stop()


def _wait_ready(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not ready in {timeout} s")


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {os.environ['ENGRAM_ADMIN_KEY']}"}


def _recall(url: str, space: str) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/spaces/{space}/recall",
        json={"query": "where did the cat sit", "k": 1},
        headers=_headers(),
        timeout=30,
    )


def test_remember_recall_and_lose_a_worker(cluster: object) -> None:
    one, other = "http://127.0.0.1:7432", "http://127.0.0.1:7442"
    space = f"e2e-{int(time.time())}"
    assert httpx.post(f"{one}/api/v1/spaces", json={"id": space}, timeout=30).status_code == 401
    r = httpx.post(f"{one}/api/v1/spaces", json={"id": space}, headers=_headers(), timeout=30)
    assert r.status_code == 201, r.text
    r = httpx.post(
        f"{one}/api/v1/spaces/{space}/memories",
        json={"memories": [{"content": "the cat sat on the mat"}, {"content": "dogs bark"}]},
        headers=_headers(),
        timeout=30,
    )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while (r := _recall(other, space)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert r.json()["results"][0]["memory"]["content"] == "the cat sat on the mat"
    status = httpx.get(
        f"{one}/api/v1/status", params={"space": space}, headers=_headers(), timeout=30
    ).json()
    (row,) = status["spaces"]
    assert len(row["hosts"]) == 2  # ENGRAM_SPACE_REPLICAS=2 over 3 workers
    # kill -9 the space's primary: its replica answers meanwhile. A worker's id
    # is <hostname>-<pid>, and a container's hostname is its short id.
    container = row["hosts"][0].rsplit("-", 1)[0]
    subprocess.run(["docker", "kill", "--signal", "KILL", container], check=True)
    for _ in range(20):
        r = _recall(other, space)
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["memory"]["content"] == "the cat sat on the mat"
        time.sleep(0.5)


def test_an_agent_reaches_its_space_over_the_published_nats_with_its_key(cluster: object) -> None:
    import asyncio

    import nats
    import nats.errors

    from engram_client import EngramClient

    url, nats_url = "http://127.0.0.1:7432", "nats://127.0.0.1:4222"
    space = f"e2e-nats-{int(time.time())}"
    r = httpx.post(f"{url}/api/v1/spaces", json={"id": space}, headers=_headers(), timeout=30)
    assert r.status_code == 201, r.text
    r = httpx.post(
        f"{url}/api/v1/keys",
        json={"spaces": [space], "role": "write"},
        headers=_headers(),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    key = r.json()["key"]

    async def agent() -> None:
        async with EngramClient.nats(nats_url, api_key=key) as client:
            await client.space(space).remember("the kettle is in the left cupboard")
            answer = await client.space(space).recall("where is the kettle", k=1)
            assert answer.results[0].memory.content == "the kettle is in the left cupboard"
        with pytest.raises(nats.errors.Error):  # no key: refused by the callout
            await nats.connect(nats_url, allow_reconnect=False)

    asyncio.run(agent())
