"""The requests-per-hour rule and its 429.
Docstrings cite lines of ``cat -n /work/shared/reference/servicenow-wire-facts.md``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from localdev.servicenow import RunningSimulator, start_simulator

from .helpers import bearer, connect, open_client, refresh

LIMIT = 3
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Rule")


@pytest.fixture
async def limited() -> AsyncIterator[RunningSimulator]:
    simulator = await start_simulator(rate_limit_per_hour=LIMIT)
    yield simulator
    await simulator.aclose()


async def test_headers_then_429(limited: RunningSimulator) -> None:
    """facts L132-137: X-RateLimit-* on every matched request; over the limit 429 + Retry-After + envelope."""
    async with open_client(limited.url) as client:
        headers = bearer((await connect(client))["access_token"])
        for _ in range(LIMIT):
            answer = await client.get("/api/now/table/incident", headers=headers)
            assert answer.status_code == 200
            assert answer.headers["X-RateLimit-Limit"] == str(LIMIT)
            assert all(name in answer.headers for name in RATE_HEADERS)
        denied = await client.get("/api/now/table/incident", headers=headers)
    assert denied.status_code == 429
    reset_at = int(denied.headers["X-RateLimit-Reset"])
    assert reset_at % 3600 == 0
    assert 1 <= int(denied.headers["Retry-After"]) <= 3600
    assert denied.json() == {
        "error": {
            "message": "Rate limit exceeded",
            "detail": f"Rate limit of {LIMIT} requests per hour for Table API exceeded",
        },
        "status": "failure",
    }


async def test_limit_is_per_user_and_resets_next_hour(limited: RunningSimulator) -> None:
    """facts L132: the rule counts per user; a new hour starts a new count (clock advanced, no sleep)."""
    async with open_client(limited.url) as client:
        granted = await connect(client)
        first = bearer(granted["access_token"])
        second = bearer((await connect(client))["access_token"])
        for _ in range(LIMIT):
            await client.get("/api/now/table/incident", headers=first)
        assert (await client.get("/api/now/table/incident", headers=first)).status_code == 429
        assert (await client.get("/api/now/table/incident", headers=second)).status_code == 200
        assert (
            await client.post("/oauth_token.do", data={"grant_type": "x"})
        ).status_code == 401  # not limited
        renewed = bearer((await refresh(client, granted["refresh_token"])).json()["access_token"])
        assert (await client.get("/api/now/table/incident", headers=renewed)).status_code == 429  # same user
        await client.post("/__sim/clock", json={"advance_seconds": 3600})
        renewed = bearer((await refresh(client, granted["refresh_token"])).json()["access_token"])
        assert (await client.get("/api/now/table/incident", headers=renewed)).status_code == 200


async def test_no_rule_no_headers(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    """facts L133: the headers appear only on requests a rule matches; the rule is configurable at runtime."""
    answer = await api.get("/api/now/table/incident")
    assert "X-RateLimit-Limit" not in answer.headers
    await client.post("/__sim/rate-limit", json={"per_hour": 1})
    assert (await api.get("/api/now/table/incident")).status_code == 200
    assert (await api.get("/api/now/table/incident")).status_code == 429
