"""The Graph adapter's Secure Score reads against the stand-in: every page of the control profiles,
the latest score's points per control, throttling (429 and Retry-After) and the per-tenant cap of
4 requests in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from localdev.entra import EntraHandle
from localdev.entra.secure_score import default_scores
from shared.errors import UpstreamUnavailable
from shared.graph import GraphClient
from shared.settings import Settings

pytestmark = pytest.mark.integration

TENANT = "5e5e5e5e-1111-2222-3333-444455556666"
OTHER_TENANT = "6f6f6f6f-7777-8888-9999-aaaabbbbcccc"


async def tenant_requests(control: httpx.AsyncClient, entra: EntraHandle, tenant: str) -> dict[str, Any]:
    answer = await control.get(f"{entra.url}/__entra/requests", params={"tenantId": tenant})
    return dict(answer.json())


async def test_every_page_of_a_small_page_size_is_read(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await control.post(f"{entra.url}/__entra/page-size", json={"pageSize": 4, "tenantId": TENANT})

    actions = await graph.list_improvement_actions(TENANT)
    asked_for_more = await graph.list_improvement_actions(TENANT, page_size=50)  # the server's page wins

    expected = [a["id"] for a in entra.state.actions]
    assert [a.id for a in actions] == [a.id for a in asked_for_more] == expected
    assert (await tenant_requests(control, entra, TENANT))["counts"] == {"graph_list": 12}  # 21 in 4s: 6 each
    other = await graph.list_improvement_actions(OTHER_TENANT)  # the default pages of 10
    assert len(other) == 21
    assert (await tenant_requests(control, entra, OTHER_TENANT))["counts"] == {"graph_list": 3}


async def test_control_scores_are_the_newest_scores_points(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    defaults = default_scores(entra.state.actions)
    assert len({*defaults.values()}) > 1  # some done, some half done, some not at all

    assert await graph.control_scores(TENANT) == defaults
    assert "PWAgePolicyNew" not in defaults  # a deprecated profile has no score

    answer = await control.put(
        f"{entra.url}/__entra/secure-scores/{TENANT}/controls/DLPEnabled", json={"score": 7.5}
    )
    assert answer.status_code == 200
    scores = await graph.control_scores(TENANT)
    assert scores["DLPEnabled"] == 7.5
    assert (await graph.control_scores(OTHER_TENANT))["DLPEnabled"] == defaults["DLPEnabled"]
    assert (await tenant_requests(control, entra, TENANT))["counts"] == {"graph_scores": 2}


async def test_the_stand_in_serves_scores_newest_first_with_graphs_fields(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await control.put(f"{entra.url}/__entra/secure-scores/{TENANT}/controls/AdminMFAV2", json={"score": 10})
    token = await graph._token(TENANT)
    answer = await control.get(
        f"{entra.url}/v1.0/security/secureScores", headers={"Authorization": f"Bearer {token}"}
    )
    scores = answer.json()["value"]
    assert [s["createdDateTime"] for s in scores] == sorted(
        (s["createdDateTime"] for s in scores), reverse=True
    )
    newest, older = scores[0], scores[1]
    mfa = next(c for c in newest["controlScores"] if c["controlName"] == "AdminMFAV2")
    assert {"controlName", "score", "controlCategory", "description"} <= set(mfa)
    assert (mfa["score"], mfa["controlCategory"], mfa["scoreInPercentage"]) == (10.0, "Identity", 100.0)
    assert newest["azureTenantId"] == TENANT
    assert newest["currentScore"] == sum(c["score"] for c in newest["controlScores"])
    assert all(c["score"] == 0 for c in older["controlScores"])


@pytest.mark.parametrize("read", ["list", "scores"])
async def test_throttling_is_retried_honouring_retry_after(
    read: str, graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await control.post(f"{entra.url}/__entra/faults", json={"status": 429, "count": 2, "retryAfter": 0.01})

    if read == "list":
        assert len(await graph.list_improvement_actions(TENANT)) == 21
        assert (await tenant_requests(control, entra, TENANT))["counts"] == {"graph_list": 5}  # 2 + 3 pages
    else:
        assert (await graph.control_scores(TENANT))["DLPEnabled"] >= 0
        assert (await tenant_requests(control, entra, TENANT))["counts"] == {"graph_scores": 3}


@pytest.mark.parametrize("read", ["list", "scores"])
async def test_a_long_retry_after_is_handed_to_the_caller(
    read: str, graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await control.post(f"{entra.url}/__entra/faults", json={"status": 429, "count": 1, "retryAfter": 120})

    call = graph.list_improvement_actions(TENANT) if read == "list" else graph.control_scores(TENANT)
    with pytest.raises(UpstreamUnavailable) as raised:
        await call
    assert (raised.value.retry_after, raised.value.hinted) == (120, True)


async def test_at_most_four_requests_per_tenant_are_in_flight(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await graph.control_scores(TENANT)  # the token, first: Entra is not Graph
    await graph.control_scores(OTHER_TENANT)
    await control.post(f"{entra.url}/__entra/latency", json={"seconds": 0.2})

    await asyncio.gather(
        *[graph.control_scores(TENANT) for _ in range(10)],
        *[graph.control_scores(OTHER_TENANT) for _ in range(4)],
    )

    mine = await tenant_requests(control, entra, TENANT)
    other = await tenant_requests(control, entra, OTHER_TENANT)
    assert (mine["maxInFlight"], other["maxInFlight"]) == (4, 4)  # and the tenants did not share slots
    counts = (await control.get(f"{entra.url}/__entra/requests")).json()["counts"]
    assert "graph_concurrency_throttled" not in counts


async def test_without_the_cap_graph_throttles_and_the_retries_recover(
    entra: EntraHandle, control: httpx.AsyncClient, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(GRAPH_BASE_URL=entra.url, ENTRA_AUTHORITY_HOST=entra.url)
    client = GraphClient.from_settings(settings, backoff=0.01, max_concurrent=8)
    assert isinstance(client, GraphClient)
    try:
        await client.control_scores(TENANT)
        await control.post(f"{entra.url}/__entra/latency", json={"seconds": 0.2})
        scores = await asyncio.gather(*[client.control_scores(TENANT) for _ in range(8)])
    finally:
        await client.aclose()
    assert all(s == scores[0] for s in scores)
    counts = (await control.get(f"{entra.url}/__entra/requests")).json()["counts"]
    assert counts["graph_concurrency_throttled"] == 4  # Graph's 429 (Retry-After: 1), then retried
