"""The sync as end-to-end tests drive it: the host's admin API for the timer and the worker,
`POST /api/sync`, and waiting for the queue worker to finish a tenant.

`use_sync` rebuilds the container's SyncService from its real adapters with other numbers (page
size, reconciliation interval, quick ServiceNow retries), the way production code would be
configured, so paging and poison tests take seconds.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from azure.storage.queue.aio import QueueClient

from localdev.queues import decode_body
from shared.models import SYNC_QUEUE
from shared.servicenow.table_api import ServiceNowTables
from shared.servicenow.transport import RetryPolicy, new_http_client
from shared.services.sync_config import SyncConfig
from shared.services.syncing import SyncService
from tests.e2e import api
from tests.e2e.conftest import Simulator, Stack

WAIT_S = 30.0  # how long to wait for the worker before giving up (a hang, not a slow pass)


def use_sync(stack: Stack, **config: Any) -> SyncService:
    """Sync with `config` (SyncConfig fields) and a ServiceNow client that retries once, quickly."""
    container = stack.container
    http = new_http_client(timeout=httpx.Timeout(2.0))
    tables = ServiceNowTables(
        http, container.access_tokens, retry=RetryPolicy(attempts=1, backoff_s=0.01, max_backoff_s=0.05)
    )
    service = SyncService(
        connections=container.connections,
        tickets=container.tickets,
        tokens=container.access_tokens,
        records=tables,
        queue=container.sync_queue,
        states=container.oauth_states,
        config=replace(SyncConfig(), **config),
    )
    # `sync_http` is in the container only so that `container.aclose()` closes it after the test.
    container.override(syncing=service, sync_http=http)
    return service


async def invoke(stack: Stack, name: str, payload: dict[str, Any] | None = None) -> str:
    """POST /admin/functions/{name} (202); returns the local invocation id."""
    response = await stack.client.post(f"/admin/functions/{name}", json=payload or {})
    assert response.status_code == 202, response.text
    return str(response.headers["x-local-invocation-id"])


async def finished(stack: Stack, invocation_id: str) -> str:
    """How an admin invocation ended: `succeeded` or `failed`."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        response = await stack.client.get(f"/admin/invocations/{invocation_id}")
        status = str(response.json()["status"])
        if status != "running":
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"invocation {invocation_id} still running after {WAIT_S} s")


async def run_timer(stack: Stack) -> None:
    """Fire the sync timer now, as the host's admin API does; it only enqueues."""
    assert await finished(stack, await invoke(stack, "sync_timer")) == "succeeded"


async def run_worker(stack: Stack, tenant: str, reason: str = "manual") -> str:
    """Run the queue worker directly on one message (the admin API's queue-function input)."""
    message = {"tenantId": tenant, "reason": reason, "requestedAt": datetime.now(UTC).isoformat()}
    return await finished(stack, await invoke(stack, "sync_worker", {"input": json.dumps(message)}))


async def sync_now(
    stack: Stack, tenant: str, *, headers: dict[str, str] | None = None, expect: int = 202
) -> Any:
    response = await stack.client.post("/api/sync", headers=headers or stack.as_admin(tenant))
    assert response.status_code == expect, response.text
    return response.json()


async def wait_status(stack: Stack, tenant: str, done: Any, what: str) -> dict[str, Any]:
    """Poll GET /api/provisioning until `done(status)`; the queue worker runs in the background."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    status: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        status = await api.status(stack, tenant)
        if done(status):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not reached after {WAIT_S} s; last status {status}")


async def wait_synced(stack: Stack, tenant: str, since: str | None) -> dict[str, Any]:
    """Wait until the worker has synced `tenant` after its `lastSyncAt` was `since`."""
    return await wait_status(
        stack, tenant, lambda s: s["lastSyncAt"] is not None and s["lastSyncAt"] != since, "synced"
    )


async def connection_row(stack: Stack, tenant: str) -> dict[str, Any]:
    [row] = await stack.rows("connections", tenant)
    return row


async def ticket_row(stack: Stack, tenant: str, ticket_id: str) -> dict[str, Any]:
    [row] = [r for r in await stack.rows("tickets", tenant) if r["RowKey"] == ticket_id]
    return row


async def update_record(simulator: Simulator, table: str, sys_id: str, **fields: str) -> dict[str, Any]:
    """Change a record as a fulfiller would in ServiceNow."""
    answer = await simulator.control("POST", f"records/{table}/{sys_id}", fields)
    return dict(answer["result"])


async def poisoned(stack: Stack, tenant: str) -> list[dict[str, Any]]:
    """The sync requests for `tenant` sitting in `sync-requests-poison` (looked at, not taken)."""
    queue = QueueClient.from_connection_string(stack.azurite.connection_string, f"{SYNC_QUEUE}-poison")
    try:
        # Receive (briefly invisible) rather than peek: peek sees only the first 32 messages, and
        # other tests' tenants may have left theirs here too.
        seen = [m async for m in queue.receive_messages(messages_per_page=32, visibility_timeout=1)]
    finally:
        await queue.close()
    bodies = [json.loads(decode_body(str(message.content))) for message in seen]
    return [body for body in bodies if body.get("tenantId") == tenant]


async def wait_poisoned(stack: Stack, tenant: str) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        found = await poisoned(stack, tenant)
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"no poison message for {tenant} after {WAIT_S} s")


def soon(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)
