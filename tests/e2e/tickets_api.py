"""The tickets API as end-to-end tests use it, on top of `tests/e2e/api.py` and the `stack`.

`connected_tenant` gives a tenant whose admin went through the real OAuth flow against the
simulator; `fast_servicenow` swaps in a ServiceNow client with a short timeout and quick retries
(same classes as production, other numbers) so fault tests take seconds, not minutes. It serves
the `ticket-creates` worker too (the host polls that queue), so a short settle window there is
the worker's as well; `settled` waits for the worker to finish a `creating` ticket.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from shared.identity import Role
from shared.servicenow.table_api import ServiceNowTables
from shared.servicenow.transport import RetryPolicy, new_http_client
from shared.services.ticket_policy import TicketingPolicy
from shared.services.ticketing import TicketingService
from tests.e2e import api
from tests.e2e.conftest import Simulator, Stack

WRITER = "Wendy Writer"
WAIT_S = 30.0  # how long to wait for the worker before giving up (a hang, not a slow pass)


def tomorrow() -> date:
    return datetime.now(UTC).date() + timedelta(days=1)


def ticket_body(**changes: Any) -> dict[str, Any]:
    """A valid POST /api/tickets body; keyword arguments replace or (value None) drop fields."""
    body: dict[str, Any] = {
        "type": "incident",
        "name": "Turn on MFA for admins",
        "description": "Admins sign in with a password only.",
        "priority": 2,
        "dueDate": tomorrow().isoformat(),
        "recommendationSource": "user",
        "recommendationCategory": "Identity",
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


async def connected_tenant(stack: Stack, simulator: Simulator | None = None) -> str:
    tenant = stack.new_tenant()
    round_trip = await api.connect(stack, tenant, simulator or stack.simulator)
    assert round_trip.outcome == {"servicenow": "connected"}, round_trip.outcome
    return tenant


def writer(stack: Stack, tenant: str) -> dict[str, str]:
    return stack.as_user(tenant, Role.READ_WRITE, name=WRITER)


def reader(stack: Stack, tenant: str) -> dict[str, str]:
    return stack.as_user(tenant, Role.READ, name="Rita Reader")


async def create(
    stack: Stack, tenant: str, body: dict[str, Any], *, key: str | None = None, expect: int | None = 201
) -> httpx.Response:
    headers = writer(stack, tenant)
    if key is not None:
        headers["Idempotency-Key"] = key
    response = await stack.client.post("/api/tickets", json=body, headers=headers)
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


async def get(stack: Stack, tenant: str, path: str = "", *, expect: int = 200, **params: Any) -> Any:
    response = await stack.client.get(f"/api/tickets{path}", params=params, headers=reader(stack, tenant))
    assert response.status_code == expect, response.text
    return response.json()


async def records(simulator: Simulator, table: str) -> list[dict[str, Any]]:
    """Every record of a simulator table, raw (what the instance stored)."""
    answer = await simulator.control("GET", f"records/{table}")
    return list(answer["result"])


async def ours(simulator: Simulator, table: str, ticket_id: str) -> list[dict[str, Any]]:
    """The simulator's records carrying this ticket's correlation id."""
    return [r for r in await records(simulator, table) if r.get("correlation_id") == ticket_id]


async def fault(simulator: Simulator, kind: str, **options: Any) -> None:
    await simulator.control("POST", "faults", {"kind": kind, **options})


def fast_servicenow(
    stack: Stack, *, timeout_s: float = 1.0, policy: TicketingPolicy | None = None
) -> TicketingService:
    """Serve ticket requests with a short ServiceNow timeout, quick retries and `policy`."""
    container = stack.container
    http = new_http_client(timeout=httpx.Timeout(timeout_s, connect=timeout_s))
    tables = ServiceNowTables(
        http,
        container.access_tokens,
        retry=RetryPolicy(attempts=3, backoff_s=0.05, max_backoff_s=1.0, max_retry_after_s=2.0),
    )
    service = TicketingService(
        connections=container.connections,
        tickets=container.tickets,
        idempotency=container.idempotency,
        servicenow=tables,
        actions=container.graph,
        queue=container.ticket_queue,
        policy=policy or TicketingPolicy(max_retry_wait_s=2.0),
    )
    # `fast_http` is in the container only so that `container.aclose()` closes it after the test.
    container.override(servicenow_tables=tables, ticketing=service, fast_http=http)
    return service


async def settled(stack: Stack, tenant: str, ticket_id: str) -> dict[str, Any]:
    """GET the ticket until it is no longer `creating` (the `ticket-creates` worker finished it)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    ticket: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        ticket = await get(stack, tenant, f"/{ticket_id}")
        if ticket["status"] != "creating":
            return ticket
        await asyncio.sleep(0.1)
    raise AssertionError(f"ticket {ticket_id} still creating after {WAIT_S} s: {ticket}")
