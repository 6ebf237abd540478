"""The Graph adapter's Secure Score reads on a mock transport: reading `controlScores`, the
per-tenant cap on requests in flight, and Graph not configured."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from shared.errors import DependencyNotConfigured, UpstreamError
from shared.graph import GraphClient, UnconfiguredGraph, to_control_scores

TENANT = "contoso.onmicrosoft.com"


class _Graph(GraphClient):
    """GraphClient without msal: a tenant's token names the tenant."""

    async def _token(self, tenant_id: str) -> str:
        return f"token-{tenant_id}"


def _graph(
    handler: Callable[[httpx.Request], Coroutine[None, None, httpx.Response]], **options: Any
) -> _Graph:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return _Graph(client_id="id", client_secret=SecretStr("s"), http=http, **options)


def _score(controls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": f"{TENANT}_2030-01-15", "currentScore": 1.0, "controlScores": controls}


async def test_control_scores_reads_the_first_that_is_the_newest_score() -> None:
    asked: list[str] = []

    async def graph(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        newest = _score([{"controlName": "AdminMFAV2", "score": 5, "controlCategory": "Identity"}])
        return httpx.Response(200, json={"value": [newest, _score([])]})

    client = _graph(graph)
    try:
        assert await client.control_scores(TENANT) == {"AdminMFAV2": 5.0}
    finally:
        await client.aclose()
    assert asked == ["https://graph.microsoft.com/v1.0/security/secureScores?$top=1"]


async def test_a_tenant_without_any_score_yet_has_no_points() -> None:
    async def graph(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"value": []})

    client = _graph(graph)
    try:
        assert await client.control_scores(TENANT) == {}
    finally:
        await client.aclose()


def test_controls_whose_score_is_not_a_number_are_left_out() -> None:
    controls: list[dict[str, Any]] = [
        {"controlName": "a", "score": 1},
        {"controlName": "b", "score": 2.5, "scoreInPercentage": 50, "on": True},
        {"controlName": "c", "score": None},
        {"controlName": "d", "score": "3"},
        {"controlName": "e", "score": True},
        {"controlName": "f", "score": float("nan")},
        {"controlName": "g"},
    ]
    assert to_control_scores(_score(controls)) == {"a": 1.0, "b": 2.5}
    assert to_control_scores({"id": "x"}) == {}


@pytest.mark.parametrize("controls", [[{"score": 1}], ["AdminMFAV2"], 42])
def test_an_unreadable_score_is_an_upstream_error(controls: Any) -> None:
    with pytest.raises(UpstreamError, match="Secure Score we could not read"):
        to_control_scores({"controlScores": controls})


async def test_requests_in_flight_are_capped_per_tenant() -> None:
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}

    async def graph(request: httpx.Request) -> httpx.Response:
        tenant = request.headers["Authorization"].removeprefix("Bearer token-")
        in_flight[tenant] = in_flight.get(tenant, 0) + 1
        most[tenant] = max(most.get(tenant, 0), in_flight[tenant])
        await asyncio.sleep(0.01)
        in_flight[tenant] -= 1
        return httpx.Response(200, json={"value": []})

    client = _graph(graph, max_concurrent=3)
    try:
        reads = [
            *(client.control_scores("a") for _ in range(9)),
            *(client.control_scores("b") for _ in range(2)),
        ]
        await asyncio.gather(*reads)
    finally:
        await client.aclose()
    assert most == {"a": 3, "b": 2}


async def test_without_graph_every_read_is_dependency_not_configured() -> None:
    graph = UnconfiguredGraph()
    with pytest.raises(DependencyNotConfigured, match="GRAPH_CLIENT_ID"):
        await graph.list_improvement_actions(TENANT)
    with pytest.raises(DependencyNotConfigured, match="GRAPH_CLIENT_ID"):
        await graph.control_scores(TENANT)
