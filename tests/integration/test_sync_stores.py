"""The sync's storage adapters against Azurite: the queue (what the queue trigger will read) and the
ticket rows' sync columns, with the storage transactions counted on the wire."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueClient

from localdev.azurite import AzuriteEndpoints
from localdev.queues import decode_body
from shared.models import SyncRequest, Ticket
from shared.stores.queues import StorageQueue
from shared.stores.tables import TableStore
from shared.stores.tickets import TicketStateChange, TicketSyncRepository, new_ticket_id

pytestmark = pytest.mark.integration


class CountRequests(AioHttpTransport):  # type: ignore[misc]
    """Counts HTTP requests to Table Storage: each is one storage transaction (a batch is one)."""

    count = 0

    async def send(self, request: Any, **kwargs: Any) -> Any:
        self.count += 1
        return await super().send(request, **kwargs)


async def test_a_message_is_base64_on_the_wire_and_the_queue_is_created_on_first_send(
    azurite: AzuriteEndpoints,
) -> None:
    name = f"sync-test-{uuid.uuid4().hex[:12]}"
    queue = StorageQueue.from_connection_string(azurite.connection_string, name)
    raw = QueueClient.from_connection_string(
        azurite.connection_string, name
    )  # no decoding: what the host sees
    try:
        body = SyncRequest(tenant_id="t-1", reason="manual", requested_at=datetime.now(UTC)).model_dump_json(
            by_alias=True
        )
        await queue.send(body)
        await queue.send(body)  # the queue exists now; a second send does not try to create it again
        received = [message async for message in raw.receive_messages(max_messages=5)]
        assert len(received) == 2
        decoded = decode_body(str(received[0].content))
        assert json.loads(decoded) == json.loads(body)
        assert SyncRequest.model_validate_json(decoded).reason == "manual"
    finally:
        await raw.delete_queue()
        await raw.close()
        await queue.aclose()


@pytest.fixture
async def tickets(azurite: AzuriteEndpoints) -> AsyncIterator[tuple[TicketSyncRepository, CountRequests]]:
    counter = CountRequests()
    service = TableServiceClient.from_connection_string(azurite.connection_string, transport=counter)
    store = TableStore(service, table_prefix=f"s{uuid.uuid4().hex[:8]}")
    try:
        yield TicketSyncRepository(store), counter
    finally:
        await store.aclose()


def _ticket(tenant_id: str, n: int, ticket_type: str) -> Ticket:
    now = datetime.now(UTC)
    return Ticket.model_validate(
        {
            "tenant_id": tenant_id,
            "ticket_id": new_ticket_id(now - timedelta(seconds=n)),
            "type": ticket_type,
            "sys_id": uuid.uuid4().hex,
            "number": f"INC{n:07d}",
            "instance_url": "https://contoso.service-now.com",
            "name": f"Ticket {n}",
            "description": "",
            "priority": 3,
            "due_date": date(2030, 1, 1),
            "recommendation_source": "user",
            "recommendation_category": "Identity",
            "created_by": "u",
            "created_by_name": "U",
            "created_at": now,
            "state": "1",
            "state_updated_at": now,
        }
    )


async def test_state_changes_go_in_transactions_of_at_most_100_and_deletions_are_flagged(
    tickets: tuple[TicketSyncRepository, CountRequests],
) -> None:
    repository, counter = tickets
    tenant = str(uuid.uuid4())
    rows = [_ticket(tenant, n, "incident" if n % 2 else "change_request") for n in range(250)]
    for row in rows:
        await repository.add(row)
    other = _ticket(str(uuid.uuid4()), 999, "incident")
    await repository.add(other)

    counter.count = 0
    index = await repository.sync_index(tenant)
    assert counter.count == 1  # 250 rows, a few columns each: one page, one transaction
    assert set(index) == {row.ticket_id for row in rows}
    assert index[rows[1].ticket_id].type == "incident"
    assert index[rows[1].ticket_id].sys_id == rows[1].sys_id
    assert not index[rows[1].ticket_id].deleted

    changed_at = datetime(2025, 3, 1, 11, 0, 0, tzinfo=UTC)
    changes = [TicketStateChange(row.ticket_id, "2", changed_at, "2025-03-01 11:00:00") for row in rows]
    counter.count = 0
    result = await repository.apply_state_changes(tenant, changes)
    assert result.applied == 250
    assert counter.count == 3  # ceil(250 / 100) transactions, one partition

    counter.count = 0
    await repository.mark_deleted(tenant, [rows[0].ticket_id, rows[1].ticket_id], changed_at)
    assert counter.count == 1

    stored = await repository.get(tenant, rows[1].ticket_id)
    assert stored is not None
    assert stored.state == "2"
    assert stored.state_updated_at == changed_at
    assert stored.deleted_in_servicenow_at == changed_at
    assert stored.name == rows[1].name  # a merge: nothing else was touched
    again = await repository.sync_index(tenant)
    assert again[rows[1].ticket_id].deleted
    assert not again[rows[2].ticket_id].deleted
    untouched = await repository.get(other.tenant_id, other.ticket_id)
    assert untouched is not None
    assert untouched.state == "1"
