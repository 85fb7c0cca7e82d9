"""Space ids from Hypothesis on every space route, in the path and in the legacy
header: anything but a valid id (dots, wildcards, whitespace, slashes, '..',
control and non-ASCII characters) is refused with the same 400 before it gets
near a subject, a stream name or a key's scope check."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram_contract.ids import space_id_problem
from tests.helpers import free_port, wait_ready

ADMIN_KEY = "hostile-admin-key-" + "h" * 20
HOSTILE = st.one_of(
    st.text(min_size=1, max_size=80),
    st.sampled_from(
        [
            "a.b",
            "alpha.>",
            "alpha.*",
            "*",
            ">",
            "al pha",
            "alpha\t",
            "../etc",
            "..",
            "a/../b",
            "ALPHA",
            "al",
            "x" * 65,
            "alpha\x00",
            "ålpha",
            "$JS",
            "alpha.q.recall",
        ]
    ),
)
ROUTES = [
    ("GET", "/api/v1/spaces/{s}"),
    ("DELETE", "/api/v1/spaces/{s}"),
    ("POST", "/api/v1/spaces/{s}/memories"),
    ("GET", "/api/v1/spaces/{s}/memories"),
    ("POST", "/api/v1/spaces/{s}/recall"),
    ("POST", "/api/v1/spaces/{s}/links"),
    ("GET", "/api/v1/spaces/{s}/export"),
    ("GET", "/api/v1/spaces/{s}/events"),
]
BODIES = {
    "memories": {"content": "x", "embedding": [1.0] * 16},
    "recall": {"embedding": [1.0] * 16},
    "links": {"source": "a", "target": "b"},
}


def _check(r: httpx.Response, space: str, where: str) -> None:
    if "/" in space or space.strip(".") == "":
        # a '/' (even as %2F) or a '.'/'..' segment changes the path itself (the
        # client or the server normalises it): the request reaches another route
        # or none, never a space's; no 5xx, and no write lands anywhere
        assert r.status_code < 500, (where, space, r.status_code, r.text)
        assert r.status_code >= 400 or where.startswith("GET"), (where, space, r.text)
        return
    assert r.status_code in (400, 404, 405), (where, space, r.status_code, r.text)
    if r.status_code == 400:
        doc = r.json()
        assert doc["type"].endswith("/invalid-space-id"), (where, space, doc)
        assert "is invalid: expected 3-64 characters" in doc["detail"]
    # 404/405: the path did not even reach a route (a '/' or an empty segment)


def test_invalid_space_ids_are_refused_everywhere(procs: Any) -> None:
    port = free_port()
    procs(
        "gateway",
        ENGRAM_HTTP_PORT=str(port),
        ENGRAM_AUTH="required",
        ENGRAM_ADMIN_KEY=ADMIN_KEY,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    with httpx.Client(base_url=url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        r = client.post(
            "/api/v1/keys", json={"spaces": ["alpha"], "role": "write"}, headers=headers
        )
        scoped = {"Authorization": f"Bearer {r.json()['key']}"}
        seen: list[str] = []

        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(space=HOSTILE)
        def probe(space: str) -> None:
            if space_id_problem(space) is None:
                return  # a valid id: not what this test is about
            seen.append(space)
            segment = urllib.parse.quote(space, safe="")
            for who in (headers, scoped):
                for method, template in ROUTES:
                    path = template.format(s=segment)
                    body = BODIES.get(path.rsplit("/", 1)[-1]) if method == "POST" else None
                    r = client.request(method, path, json=body, headers=who)
                    _check(r, space, f"{method} {template}")
                # the legacy routes take it from the header (when it can be one)
                if space.isprintable() and space.isascii() and space == space.strip():
                    r = client.post(
                        "/api/v1/recall",
                        json=BODIES["recall"],
                        headers={**who, "X-Memory-Space": space},
                    )
                    _check(r, space, "legacy recall")
                    assert r.status_code == 400

        probe()
        assert len(seen) >= 20
