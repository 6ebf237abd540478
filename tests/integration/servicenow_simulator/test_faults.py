"""Injected faults: the ways a real instance makes a client fail.
Docstrings cite lines of ``cat -n /work/shared/reference/servicenow-wire-facts.md``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from localdev.servicenow import RunningSimulator

INCIDENT_URL = "/api/now/table/incident"


async def _inject(client: httpx.AsyncClient, **fault: Any) -> dict[str, Any]:
    answer = await client.post("/__sim/faults", json=fault)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _incidents(api: httpx.AsyncClient, query: str = "") -> list[dict[str, Any]]:
    answer = await api.get(INCIDENT_URL, params={"sysparm_query": query})
    rows: list[dict[str, Any]] = answer.json()["result"]
    return rows


async def test_429_fault_has_rate_limit_shape(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """facts L133-137: 429 with Retry-After, X-RateLimit-* and the 'Rate limit exceeded' envelope."""
    await _inject(client, kind="429", retry_after=7)
    answer = await api.get(INCIDENT_URL)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "7"
    assert all(
        name in answer.headers for name in ("X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Rule")
    )
    assert answer.json()["error"]["message"] == "Rate limit exceeded"
    assert (await api.get(INCIDENT_URL)).status_code == 200  # one shot only


@pytest.mark.parametrize("status", [500, 503])
async def test_server_error_faults(client: httpx.AsyncClient, api: httpx.AsyncClient, status: int) -> None:
    """facts L115: 500 and 503 are among the instance's status codes; bodies use the error envelope."""
    await _inject(client, kind=str(status), count=2)
    for _ in range(2):
        answer = await api.get(INCIDENT_URL)
        assert answer.status_code == status
        assert answer.json()["status"] == "failure"
    assert (await api.get(INCIDENT_URL)).status_code == 200


async def test_timeout_before_processing(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """facts L123, L126: a call that hangs past the client's timeout; nothing was created."""
    await _inject(client, kind="timeout", delay_seconds=1.0, method="POST", path_prefix=INCIDENT_URL)
    with pytest.raises(httpx.ReadTimeout):
        await api.post(INCIDENT_URL, json={"short_description": "slow"}, timeout=0.2)
    assert await _incidents(api) == []


async def test_timeout_held_then_answered(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """facts L123, L126: a patient client gets the transaction-cancelled error after the hold."""
    await _inject(client, kind="timeout", delay_seconds=0.1)
    answer = await api.get(INCIDENT_URL)
    assert answer.status_code == 500
    assert answer.json()["error"]["message"] == "Transaction cancelled: maximum execution time exceeded"


async def test_dropped_connection(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """A connection closed with no response at all (the client must treat the outcome as unknown)."""
    await _inject(client, kind="drop")
    with pytest.raises(httpx.TransportError):
        await api.get(INCIDENT_URL)
    assert (await api.get(INCIDENT_URL)).status_code == 200


@pytest.mark.parametrize("kind", ["drop", "timeout"])
async def test_fault_after_processing_creates_the_record(
    client: httpx.AsyncClient, api: httpx.AsyncClient, kind: str
) -> None:
    """facts L71, L179: ServiceNow made the record (201) but the answer is lost; correlation_id finds it."""
    await _inject(
        client, kind=kind, method="POST", path_prefix=INCIDENT_URL, after_processing=True, delay_seconds=1.0
    )
    with pytest.raises(httpx.TransportError):
        await api.post(INCIDENT_URL, json={"correlation_id": "ticket-42"}, timeout=0.3)
    rows = await _incidents(api, "correlation_id=ticket-42")
    assert [row["number"] for row in rows] == ["INC0010001"]


async def test_fault_scoped_by_method_and_path(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """Scoping: a fault for POST incident leaves GETs and change_request alone until it fires."""
    await _inject(client, kind="503", method="POST", path_prefix=INCIDENT_URL)
    assert (await api.get(INCIDENT_URL)).status_code == 200
    assert (await api.post("/api/now/table/change_request", json={})).status_code == 201
    assert (await client.get("/__sim/faults")).json()["pending"][0]["remaining"] == 1
    assert (await api.post(INCIDENT_URL, json={})).status_code == 503
    assert (await api.post(INCIDENT_URL, json={})).status_code == 201
    listing = (await client.get("/__sim/faults")).json()
    assert (listing["pending"], listing["fired"]) == ([], 1)


async def test_fault_on_token_endpoint(client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """Faults apply to OAuth endpoints too when scoped there (a refresh that fails transiently)."""
    await _inject(client, kind="503", path_prefix="/oauth_token.do")
    form = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": "dev-client-id",
        "client_secret": "dev-client-secret",
    }
    assert (await client.post("/oauth_token.do", data=form)).status_code == 503
    assert (await client.post("/oauth_token.do", data=form)).status_code == 200


async def test_bad_fault_request(client: httpx.AsyncClient) -> None:
    answer = await client.post("/__sim/faults", json={"kind": "418"})
    assert answer.status_code == 400
    assert (await client.delete("/__sim/faults")).status_code == 204


async def test_held_response_does_not_stall_shutdown(
    sim: RunningSimulator, client: httpx.AsyncClient
) -> None:
    """aclose() releases a response held by a long timeout fault instead of waiting for it."""
    await _inject(client, kind="timeout", delay_seconds=60)
    with pytest.raises(httpx.ReadTimeout):
        await client.get("/oauth_revoke_token.do", timeout=0.1)


async def test_503_carries_retry_after_only_when_the_fault_names_one(
    client: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    """A 503 from rate limiting or maintenance says when to come back; one from elsewhere does not."""
    await _inject(client, kind="503", retry_after=4)
    await _inject(client, kind="503")
    hinted, bare = await api.get(INCIDENT_URL), await api.get(INCIDENT_URL)
    assert (hinted.status_code, hinted.headers.get("Retry-After")) == (503, "4")
    assert (bare.status_code, bare.headers.get("Retry-After")) == (503, None)


async def test_403_fault_is_a_refusal_in_the_error_envelope(
    client: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    """facts L115: 403 (ACL, business rule or data policy) in the error envelope; nothing is made."""
    await _inject(client, kind="403", method="POST", path_prefix=INCIDENT_URL)
    answer = await api.post(INCIDENT_URL, json={"correlation_id": "refused"})
    assert answer.status_code == 403
    assert answer.json()["status"] == "failure"
    assert await _incidents(api, "correlation_id=refused") == []


async def test_late_commit_makes_the_record_after_the_client_gave_up(
    client: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    """facts L126: a transaction may run on for up to 60 s after the client's timeout, then commit."""
    await _inject(
        client, kind="timeout", method="POST", path_prefix=INCIDENT_URL, late_commit=True, delay_seconds=0.5
    )
    with pytest.raises(httpx.ReadTimeout):
        await api.post(INCIDENT_URL, json={"correlation_id": "late-1"}, timeout=0.1)
    assert await _incidents(api, "correlation_id=late-1") == []  # still running
    for _ in range(50):
        await asyncio.sleep(0.05)
        if rows := await _incidents(api, "correlation_id=late-1"):
            break
    assert [row["correlation_id"] for row in rows] == ["late-1"]
    bad = await client.post("/__sim/faults", json={"kind": "drop", "late_commit": True})
    assert bad.status_code == 400
