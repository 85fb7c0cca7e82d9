"""The README's 60-second tour, run as written, with the default embedder of new
spaces (e5-small): its natural question finds the right memory."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engram_contract.settings import GatewaySettings
from engram_worker.worker import Worker
from tests.helpers import NatsServer, gateway_settings, running_gateway

README = Path(__file__).parents[2] / "README.md"
DEFAULT_EMBEDDER = GatewaySettings.model_fields["default_embedder"].default


def tour_requests() -> list[tuple[str, dict[str, object]]]:
    """The tour's ``curl -XPOST $H<path> -d '<json>'`` requests, in order."""
    text = README.read_text()
    block = text.split("## A 60-second tour", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)  # continued lines
    found = re.findall(r"curl -s -XPOST \$H(\S+)\s+-d '(.*?)'", joined, flags=re.S)
    return [(path, json.loads(body)) for path, body in found]


async def test_the_tours_question_finds_the_cat(
    nats_server: NatsServer, worker: Worker, space_id: str
) -> None:
    assert DEFAULT_EMBEDDER == "e5-small"
    requests = tour_requests()
    paths = [path for path, _ in requests]
    assert paths[:4] == [
        "/api/v1/spaces",
        "/api/v1/spaces/alpha/memories",
        "/api/v1/spaces/alpha/memories",
        "/api/v1/spaces/alpha/recall",
    ]
    settings = gateway_settings(nats_server.url, default_embedder=DEFAULT_EMBEDDER)
    async with running_gateway(settings) as http:
        answers = []
        for path, body in requests[:4]:
            path = path.replace("alpha", space_id)
            if body.get("id") == "alpha":
                body = {**body, "id": space_id}
            r = await http.post(path, json=body)
            assert r.status_code in (200, 201, 202), (path, r.text)
            answers.append(r.json())
        assert answers[0]["embedder"] == "e5-small"
        question = requests[3][1]["query"]
        assert question == "what pet does the user have?"
        results = answers[3]["results"]
        assert results[0]["memory"]["id"] == "pet", [
            (r["memory"]["content"], r["score"], r["similarity"], r["activation"], r["confidence"])
            for r in results
        ]
        assert results[0]["memory"]["content"] == "The user has a cat called Miso"

        # and the tour's other recall: only memories tagged "travel"
        r = await http.post(
            f"/api/v1/spaces/{space_id}/recall",
            json={"query": "seats", "mode": "similarity", "tags": ["travel"], "trace": True},
        )
        contents = [x["memory"]["content"] for x in r.json()["results"]]
        assert contents == ["The user prefers window seats on long flights"]
