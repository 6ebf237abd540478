"""The remediation flags in the `tickets` table on Azurite: counted with the states in one query, and
filtered on by the list, also over rows written before the flag columns existed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient

from localdev.azurite import AzuriteEndpoints
from shared.records import Ticket, new_ticket_id
from shared.stores.tables import TableStore, to_entity
from shared.stores.tickets import TICKETS, TicketRepository

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FLAG_COLUMNS = ("ClosedWithoutRemediation", "RemediatedWhileOpen", "Regressed")


@pytest.fixture
async def tables(azurite: AzuriteEndpoints) -> AsyncIterator[TableStore]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table_store = TableStore(service, table_prefix=f"f{uuid.uuid4().hex[:8]}")
    yield table_store
    await table_store.aclose()


def ticket(n: int, tenant: str = "t1", **changes: Any) -> Ticket:
    fields: dict[str, Any] = {
        "tenant_id": tenant, "ticket_id": new_ticket_id(NOW + timedelta(seconds=n)), "type": "incident",
        "sys_id": "a" * 32, "number": f"INC{10001 + n:07d}", "instance_url": "https://contoso.service-now.com",
        "name": f"T{n}", "description": "d", "priority": 3, "due_date": date(2026, 6, 30),
        "recommendation_source": "microsoft", "recommendation_category": "Identity",
        "improvement_action_id": "AdminMFAV2", "created_by": "u", "created_by_name": "U", "created_at": NOW,
        "state": "1", "state_updated_at": NOW,
    }  # fmt: skip
    return Ticket(**{**fields, **changes})


async def test_flags_are_counted_per_type_and_filtered_on_with_the_other_filters(tables: TableStore) -> None:
    repo = TicketRepository(tables)
    await repo.add(ticket(0, closed_without_remediation=True, state="6"))
    await repo.add(ticket(1, closed_without_remediation=True, regressed=True, state="7"))
    await repo.add(ticket(2, remediated_while_open=True))
    await repo.add(ticket(3, type="change_request", state="-5", regressed=True))
    await repo.add(ticket(4))
    await repo.add(ticket(5, tenant="t2", regressed=True))
    # A row written before the flag columns existed has none of them: no flag, and no error.
    before = ticket(6)
    old = {k: v for k, v in to_entity(before, "t1", before.ticket_id).items() if k not in FLAG_COLUMNS}
    await (await tables.table(TICKETS)).create_entity(old)

    counts = await repo.count_by_state("t1")
    assert counts.states == {
        ("incident", "1"): 3,
        ("incident", "6"): 1,
        ("incident", "7"): 1,
        ("change_request", "-5"): 1,
    }
    assert counts.flags == {
        ("incident", "closedWithoutRemediation"): 2,
        ("incident", "regressed"): 1,
        ("incident", "remediatedWhileOpen"): 1,
        ("change_request", "regressed"): 1,
    }

    async def names(**filters: Any) -> list[str]:
        items, token = await repo.page("t1", **filters)
        assert token is None
        return [t.name for t in items]

    assert await names(flag="regressed") == ["T3", "T1"]
    assert await names(flag="regressed", type="incident") == ["T1"]
    assert await names(flag="closedWithoutRemediation", state="6") == ["T0"]
    assert await names(flag="remediatedWhileOpen", type="change_request") == []
    assert len(await names()) == 6
