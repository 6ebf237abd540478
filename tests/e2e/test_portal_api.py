"""What a portal front end on another origin sees through the local host: CORS preflights and
headers, one log line per request, the sync's progress, and the authorize link's shape."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from tests.e2e import api, sync_api
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

PORTAL_DEV = "http://localhost:3000"  # allowed with LOCAL_DEV, as a portal under development runs
ROUTES = [
    ("POST", "/api/tickets"),
    ("GET", "/api/tickets/0000000000000abcdef12"),
    ("GET", "/api/tickets/summary"),
    ("PUT", "/api/provisioning"),
    ("POST", "/api/provisioning/authorize"),
    ("PUT", "/api/provisioning/state-names"),
    ("PUT", "/api/provisioning/secure-score"),
    ("DELETE", "/api/provisioning"),
    ("POST", "/api/sync"),
]


def preflight_headers(origin: str, method: str) -> dict[str, str]:
    """What Chromium sends before a fetch() with a JSON body and the headers the portal adds."""
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type,idempotency-key,x-ms-client-principal",
        "Sec-Fetch-Mode": "cors",
    }


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_a_browser_preflight_from_the_portal_passes_on_every_route(
    stack: Stack, method: str, path: str
) -> None:
    response = await stack.client.options(path, headers=preflight_headers(PORTAL_DEV, method))
    assert response.status_code == 204, response.text
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == PORTAL_DEV
    assert method in headers["Access-Control-Allow-Methods"].split(", ")
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "idempotency-key", "authorization", "x-ms-client-principal"} <= allowed
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert headers["Vary"] == "Origin"


async def test_a_preflight_from_another_origin_gets_no_cors_headers(stack: Stack) -> None:
    response = await stack.client.options(
        "/api/tickets", headers=preflight_headers("https://evil.example.com", "POST")
    )
    assert response.status_code == 403
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    assert response.json()["error"]["code"] == "forbidden_origin"


async def test_answers_to_the_portal_expose_what_it_reads(stack: Stack) -> None:
    tenant = stack.new_tenant()
    response = await stack.client.get(
        "/api/provisioning", headers={**stack.as_admin(tenant), "Origin": PORTAL_DEV}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == PORTAL_DEV
    assert response.headers["Access-Control-Expose-Headers"] == "Location, Retry-After, X-Request-Id"
    other = await stack.client.get(
        "/api/provisioning", headers={**stack.as_admin(tenant), "Origin": "https://evil.example.com"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_one_line_per_request_and_the_host_says_the_status(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tenant = stack.new_tenant()
    response = await stack.client.get("/api/tickets/0000000000000abcdef12", headers=stack.as_admin(tenant))
    assert response.status_code == 404
    request_id = response.headers["X-Request-Id"]
    app_lines = [r for r in caplog.records if r.name == "functions._http"]
    [line] = [r.getMessage() for r in app_lines if request_id in r.getMessage()]
    assert line.startswith("GET api/tickets/{id} 404 (Duration=")
    assert f"tenant={tenant}, requestId={request_id})" in line
    host = [
        r.getMessage() for r in caplog.records if r.name == "localdev.host" and request_id in r.getMessage()
    ]
    [executed] = [text for text in host if text.startswith("Executed")]
    assert executed.startswith("Executed 'Functions.tickets_get' (status 404, ")
    assert "Succeeded" not in executed


async def test_a_queued_sync_is_done_when_the_status_says_so(stack: Stack) -> None:
    tenant = stack.new_tenant()
    assert (await api.connect(stack, tenant, stack.simulator)).outcome == {"servicenow": "connected"}
    before = await api.status(stack, tenant)
    assert (before["syncInProgress"], before["lastSyncStartedAt"]) == (False, None)

    queued = await sync_api.sync_now(stack, tenant)
    assert queued["statusUrl"] == "/api/provisioning"
    requested = datetime.fromisoformat(queued["requestedAt"])

    def done(status: dict[str, object]) -> bool:
        started = status["lastSyncStartedAt"]
        return (
            isinstance(started, str)
            and datetime.fromisoformat(started) >= requested
            and status["syncInProgress"] is False
        )

    synced = await sync_api.wait_status(stack, tenant, done, "synced after the request")
    assert synced["lastError"] is None
    assert synced["lastSyncAt"] is not None


async def test_both_authorize_answers_have_one_shape(stack: Stack) -> None:
    tenant = stack.new_tenant()
    configured = (await api.configure(stack, tenant, stack.simulator)).json()
    fresh = await stack.client.post("/api/provisioning/authorize", headers=stack.as_admin(tenant))
    assert fresh.status_code == 200
    assert set(configured) == set(fresh.json()) == {"status", "authorizeUrl"}
    assert fresh.json()["status"] == "pending_authorization"
