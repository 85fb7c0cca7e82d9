"""Every HTTP route says who may call it; ENGRAM_AUTH=auto follows the bind address."""

from __future__ import annotations

import pytest

from engram_contract.settings import GatewaySettings
from engram_gateway.asyncapi import asyncapi_routes
from engram_gateway.auth import RateLimiter, keys_required, loopback
from engram_gateway.routes import ROUTES

PROBES = {"/health", "/ready", "/metrics"}


def test_every_route_declares_its_role_and_only_the_probes_are_open() -> None:
    for handler in [*ROUTES, *asyncapi_routes(GatewaySettings())]:
        paths = set(handler.paths)
        if paths <= PROBES:
            assert handler.opt.get("auth") == "open", paths
        else:
            assert handler.opt.get("role") in ("read", "write", "admin"), paths
            assert "auth" not in handler.opt, paths


def test_space_routes_need_write_for_changes_and_read_for_the_rest() -> None:
    for handler in ROUTES:
        path = next(iter(handler.paths))
        if "{space" not in path and not handler.opt.get("space"):
            continue
        methods = handler.http_methods
        reads = methods <= {"GET", "HEAD"} or path.endswith("/recall")
        if path.startswith("/api/v1/spaces/{space:str}") and path.count("/") == 4:
            expected = "read" if reads else "admin"  # the space itself: delete is admin's
        else:
            expected = "read" if reads else "write"
        assert handler.opt["role"] == expected, (path, methods, handler.opt)


@pytest.mark.parametrize(
    ("host", "auth", "required"),
    [
        ("127.0.0.1", "auto", False),
        ("::1", "auto", False),
        ("localhost", "auto", False),
        ("0.0.0.0", "auto", True),
        ("10.1.2.3", "auto", True),
        ("engram.internal", "auto", True),
        ("127.0.0.1", "required", True),
        ("0.0.0.0", "off", False),
    ],
)
def test_auto_requires_keys_unless_on_loopback(host: str, auth: str, required: bool) -> None:
    settings = GatewaySettings(http_host=host, auth=auth)
    assert keys_required(settings) is required
    assert loopback(host) is (host in ("127.0.0.1", "::1", "localhost"))


def test_the_rate_limiter_is_a_token_bucket_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("engram_gateway.auth.time.monotonic", lambda: now[0])
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.wait("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait("a") == pytest.approx(0.5)  # empty: one token in 1/rate s
    assert limiter.wait("b") == 0.0  # another key has its own bucket
    now[0] += 0.5
    assert limiter.wait("a") == 0.0
    assert limiter.wait("a") == pytest.approx(0.5)
    now[0] += 10.0  # refills up to the burst, not beyond
    assert [limiter.wait("a") for _ in range(4)][-1] == pytest.approx(0.5)
    assert RateLimiter(rate=0.0, burst=0).wait("a") == 0.0  # off
    assert RateLimiter(rate=5.0, burst=0).burst == 10.0
