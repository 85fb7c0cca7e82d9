"""schemathesis against a running gateway (issue 16, hostile input): a real
uvicorn gateway and worker on a nats-server of this module's own, the gateway's
own ``/schema/openapi.json``, and cases generated from it — valid ones and
invalid ones (every parameter, header and body field broken in turn) — for
every operation, then stateful sequences along the document's links (create a
space → remember in it → get / forget the memory…). Every response must be no
5xx, a documented status, a documented content type, match the documented
schema (problem+json for errors) and carry the documented headers.

Twice: with keys off, and with keys required (an admin key on every request;
plus one round without a key: every keyed route's 401). The default suite runs
a few cases per operation (derandomized: the same cases every run, no
shrinking); the slow test runs many more, and schemathesis' coverage cases
(every limit, pattern and type of the document just inside and just outside).

Not fuzzed: ``GET …/events`` streams until the client goes away (a valid case
would hold the run until its timeout); tests/integration/test_events_sse.py
and test_hostile_space_ids.py cover its answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engram_worker.worker import Worker
from tests.helpers import (
    NatsServer,
    gateway_settings,
    purge_heartbeats,
    running_gateway,
    worker_settings,
)

ADMIN_KEY = "fuzz-admin-key-" + "f" * 24
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
#: an import's body is NDJSON text: sent as it is generated
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
NOT_FUZZED = "space_events"
CALL_TIMEOUT = 30.0


@dataclass
class Run:
    """One fuzz run's findings (each distinct failure once) and what it did."""

    failures: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    stateful_calls: int = 0
    stateful_ended_early: bool = False
    statuses: dict[int, int] = field(default_factory=dict)

    def exercise(self, case: Any, session: requests.Session, headers: dict[str, str]) -> None:
        try:
            response = case.call(session=session, headers=headers, timeout=CALL_TIMEOUT)
        except requests.RequestException as exc:
            self._failed(case, f"no answer: {exc!r}")
            return
        self.calls += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            self._failed(case, f"{exc}\n  → {response.status_code} {response.text[:300]}")

    def _failed(self, case: Any, what: str) -> None:
        key = f"{case.operation.label}: {what.splitlines()[0] if what else ''}"
        self.failures.setdefault(key, f"{case.operation.label}\n{what}\n{case.as_curl_command()}")

    def report(self) -> str:
        return f"{len(self.failures)} failures:\n\n" + "\n\n".join(self.failures.values())


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,  # the same cases every run
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # failures are collected, not shrunk
        suppress_health_check=list(HealthCheck),
        stateful_step_count=8,
    )


def fuzz(
    base: str,
    headers: dict[str, str],
    examples: int,
    scenarios: int,
    schema_headers: dict[str, str] | None = None,
    coverage: bool = False,
) -> Run:
    """Every operation with ``examples`` valid and ``examples`` invalid cases (and,
    with ``coverage``, schemathesis' deterministic boundary cases: each limit,
    pattern and type of the document just inside and just outside), then
    ``scenarios`` stateful sequences along the links, each request with ``headers``
    (blocking: run in a thread). The document is fetched with ``schema_headers``
    (default: ``headers``)."""
    schema = schemathesis.openapi.from_url(
        f"{base}/schema/openapi.json",
        headers=headers if schema_headers is None else schema_headers,
        timeout=CALL_TIMEOUT,
    )
    schema = schema.exclude(operation_id=NOT_FUZZED)
    run = Run()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if coverage:
                for case in schema.iter_coverage_cases(
                    operation,
                    generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                    generation_config=schema.config.generation_for(operation=operation),
                ):
                    run.exercise(case, session, headers)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @_settings(examples)
                @given(case=operation.as_strategy(generation_mode=mode))
                def one(case: Any) -> None:
                    run.exercise(case, session, headers)

                with contextlib.suppress(Unsatisfiable):  # nothing to break (no parameters)
                    one()
        if scenarios:
            machine = _stateful(schema, run, session, headers)
            try:
                run_state_machine_as_test(machine, settings=_settings(scenarios))
            except Flaky:
                # the server's state changed which steps were possible between two
                # scenarios with the same start (what schemathesis' own runner also
                # ends a stateful suite on): the steps so far were checked
                run.stateful_ended_early = True
    return run


def _stateful(
    schema: Any, run: Run, session: requests.Session, headers: dict[str, str]
) -> type[Any]:
    class Links(schema.as_state_machine()):  # type: ignore[misc]
        def _step(self, input: Any) -> Any:
            try:
                return self.step(input)
            except Exception as exc:  # a step that broke is a finding, not a reason to replay
                run._failed(input.case, f"(stateful) {exc!r}")
                return None

        def call(self, case: Any, **kwargs: Any) -> Any:
            response = case.call(session=session, headers=headers, timeout=CALL_TIMEOUT)
            run.calls += 1
            run.stateful_calls += 1
            run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1
            return response

        def validate_response(self, response: Any, case: Any, *args: Any, **kw: Any) -> None:
            try:
                case.validate_response(response, checks=CHECKS)
            except (AssertionError, FailureGroup) as exc:
                run._failed(case, f"(stateful) {exc}\n  → {response.status_code} {response.text}")

    return Links


@pytest.fixture(scope="module")
def fuzz_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server of this module's own: the spaces and keys the fuzzer makes
    stay out of the session's."""
    server = NatsServer(tmp_path_factory.mktemp("fuzz-nats") / "store")
    server.start()
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def stack(nats: NatsServer, **gateway: Any) -> AsyncIterator[httpx.AsyncClient]:
    worker = Worker(worker_settings(nats.url, snapshot_interval=3600))
    await worker.start()
    try:
        async with running_gateway(gateway_settings(nats.url, **gateway)) as client:
            yield client
    finally:
        await worker.stop()
        await purge_heartbeats(nats.url, [worker.settings.worker_id])


async def _fuzzed(client: httpx.AsyncClient, headers: dict[str, str], *args: Any) -> Run:
    run = await asyncio.to_thread(fuzz, str(client.base_url), headers, *args)
    print(
        f"fuzz: {run.calls} calls ({run.stateful_calls} stateful"
        f"{', ended early' if run.stateful_ended_early else ''}), "
        f"statuses {sorted(run.statuses.items())}"
    )
    assert not run.failures, run.report()
    return run


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


REQUIRED: dict[str, Any] = {"auth": "required", "admin_key": ADMIN_KEY}


async def test_fuzz_with_keys_off(fuzz_nats: NatsServer) -> None:
    async with stack(fuzz_nats, auth="off") as client:
        run = await _fuzzed(client, {}, 3, 4)
    assert run.calls > 150
    assert any(200 <= s < 300 for s in run.statuses), run.statuses  # not only refusals


async def test_fuzz_with_keys_required(fuzz_nats: NatsServer) -> None:
    async with stack(fuzz_nats, **REQUIRED) as client:
        # a key of its own: a revoke of the operator's (`env-admin`) must not end the run
        r = await client.post("/api/v1/keys", json={"admin": True}, headers=bearer(ADMIN_KEY))
        key = r.json()["key"]
        run = await _fuzzed(client, bearer(key), 3, 4)
        # the key worked (spaces and keys were created), and invalid cases without it
        # (schemathesis drops the security header) met the documented 401
        assert run.statuses.get(201, 0) > 0 and run.statuses.get(401, 0) > 0, run.statuses
        # no key: every keyed operation answers the documented 401 (WWW-Authenticate)
        unkeyed = await _fuzzed(client, {}, 1, 0, bearer(key))
    assert set(unkeyed.statuses) <= {200, 401}, unkeyed.statuses
    assert unkeyed.statuses[401] >= 25


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("keys", ["off", "required"])
async def test_fuzz_many_cases(fuzz_nats: NatsServer, keys: str) -> None:
    over: dict[str, Any] = REQUIRED if keys == "required" else {"auth": "off"}
    async with stack(fuzz_nats, **over) as client:
        headers = bearer(ADMIN_KEY) if keys == "required" else {}
        run = await _fuzzed(client, headers, 60, 40, None, True)
    assert run.calls > 4000


# -- what the fuzzer found, as a user meets it ----------------------------------------------


async def test_revoking_a_malformed_key_id_is_a_404_not_a_500(fuzz_nats: NatsServer) -> None:
    async with stack(fuzz_nats, **REQUIRED) as client:
        for key_id in ("%C3%9A%C3%A3", "a.b", "x*", "not-a-key"):
            r = await client.delete(f"/api/v1/keys/{key_id}", headers=bearer(ADMIN_KEY))
            assert r.status_code == 404, (key_id, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["title"] == "Key not found"


async def test_a_space_limit_beyond_int64_is_a_400_not_a_500(fuzz_nats: NatsServer) -> None:
    async with stack(fuzz_nats, auth="off") as client:
        for limit in ("max_bytes", "max_memories"):
            body = {"id": f"huge-{limit.replace('_', '-')}", limit: 2**70}
            r = await client.post("/api/v1/spaces", json=body)
            assert r.status_code == 400, r.text
            assert r.json()["errors"][0]["field"] == limit
            assert (await client.get(f"/api/v1/spaces/{body['id']}")).status_code == 404


async def test_a_max_bytes_jetstream_cannot_reserve_is_a_400_not_a_500(
    fuzz_nats: NatsServer,
) -> None:
    async with stack(fuzz_nats, auth="off") as client:
        body = {"id": "too-big-to-reserve", "max_bytes": 2**62}
        r = await client.post("/api/v1/spaces", json=body)
        assert r.status_code == 400, r.text
        problem = r.json()
        assert problem["errors"][0]["field"] == "max_bytes"
        assert "cannot reserve" in problem["detail"] and "smaller" in problem["hint"]
        assert (await client.get("/api/v1/spaces/too-big-to-reserve")).status_code == 404
        # what it can reserve is created
        r = await client.post("/api/v1/spaces", json={**body, "max_bytes": 1 << 20})
        assert r.status_code == 201, r.text


async def test_a_min_seq_beyond_the_wal_is_a_400_at_once_not_a_504(fuzz_nats: NatsServer) -> None:
    async with stack(fuzz_nats, auth="off") as client:
        space = "future-seq"
        r = await client.post("/api/v1/spaces", json={"id": space, "dim": 4})
        assert r.status_code == 201, r.text
        r = await client.post(
            f"/api/v1/spaces/{space}/memories", json={"content": "x", "embedding": [1, 0, 0, 0]}
        )
        seq = r.json()["seq"]
        cue = {"embedding": [1, 0, 0, 0]}
        for path, body in (("recall", cue), ("consolidate", {})):
            r = await client.post(
                f"/api/v1/spaces/{space}/{path}", json={**body, "min_seq": seq + 1000}
            )
            assert r.status_code == 400, (path, r.text)
            assert r.json()["errors"][0]["field"] == "min_seq"
            assert f"({seq})" in r.json()["detail"]
            # the seq a write answered with is fine
            r = await client.post(f"/api/v1/spaces/{space}/{path}", json={**body, "min_seq": seq})
            assert r.status_code == 200, (path, r.text)
        r = await client.post(
            f"/api/v1/spaces/{space}/recall",
            json={**cue, "min_seq": seq + 1000, "consistency": "eventual"},
        )
        assert r.status_code == 200, r.text  # eventual waits for nothing


async def test_metrics_content_type_names_its_charset_once(fuzz_nats: NatsServer) -> None:
    async with stack(fuzz_nats, auth="off") as client:
        r = await client.get("/metrics")
    assert r.status_code == 200
    content_type = r.headers["content-type"]
    assert content_type.startswith("text/plain; version=")
    assert content_type.count("charset") == 1, content_type
