"""The Secure Score check's store against Azurite, through the real azure-data-tables client: which
rows and columns it reads, merges in transactions, values taken away, rows never made again."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from azure.data.tables import UpdateMode

from shared.records import Ticket, new_ticket_id
from shared.remediation import RemediationChange, RemediationFields, RemediationStatus
from shared.stores.remediation_rows import RemediationRowRepository
from shared.stores.tables import TableStore
from shared.stores.tickets import TicketRepository

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ticket(tenant: str, ticket_id: str, action_id: str | None, **fields: object) -> Ticket:
    values: dict[str, object] = {
        "tenant_id": tenant, "ticket_id": ticket_id, "type": "incident", "sys_id": "a" * 32,
        "number": "INC0010001", "instance_url": "https://contoso.service-now.com", "name": "n",
        "description": "d" * 2000, "priority": 3, "due_date": date(2026, 6, 30),
        "recommendation_source": "microsoft", "recommendation_category": "Identity",
        "improvement_action_id": action_id, "created_by": "u", "created_by_name": "U",
        "created_at": NOW, "state": "1", "state_updated_at": NOW, **fields,
    }  # fmt: skip
    return Ticket.model_validate(values)


async def test_reads_the_tenants_action_tickets_newest_first_with_their_stored_results(
    store: TableStore,
) -> None:
    tickets, rows = TicketRepository(store), RemediationRowRepository(store)
    ids = [new_ticket_id(NOW + timedelta(seconds=n)) for n in range(3)]
    await tickets.add(ticket("t1", ids[0], "AdminMFAV2", state="6", deleted_in_servicenow_at=NOW))
    await tickets.add(ticket("t1", ids[1], None))  # not made for an action
    await tickets.add(
        ticket(
            "t1", ids[2], "DLPEnabled", remediation_status=RemediationStatus.COMPLETED,
            remediation_score=8.0, remediation_max_score=8.0,
            remediation_checked_at=NOW, remediation_completed_at=NOW, remediated_while_open=True,
            write_back_comment="ServiceNow INC0010001 (New): x", status="created",
        )
    )  # fmt: skip
    await tickets.add(ticket("t2", new_ticket_id(NOW), "AdminMFAV2"))  # another tenant's

    found = await rows.action_tickets("t1")

    assert [row.ticket_id for row in found] == [ids[2], ids[0]]
    newest, oldest = found
    assert (newest.action_id, newest.type, newest.number, newest.state, newest.status) == (
        "DLPEnabled", "incident", "INC0010001", "1", "created",
    )  # fmt: skip
    assert newest.fields == RemediationFields(
        remediation_status=RemediationStatus.COMPLETED, remediation_score=8.0, remediation_max_score=8.0,
        remediation_checked_at=NOW, remediation_completed_at=NOW, remediated_while_open=True,
        write_back_comment="ServiceNow INC0010001 (New): x",
    )  # fmt: skip
    assert (oldest.state, oldest.deleted, oldest.state_updated_at, oldest.fields) == (
        "6", True, NOW, RemediationFields(),
    )  # fmt: skip
    assert await rows.action_tickets("nobody") == []


async def test_merges_in_transactions_and_takes_values_away_without_touching_other_columns(
    store: TableStore,
) -> None:
    tickets, rows = TicketRepository(store), RemediationRowRepository(store)
    ids = [new_ticket_id(NOW + timedelta(milliseconds=n)) for n in range(150)]
    await asyncio.gather(*(tickets.add(ticket("t1", i, "AdminMFAV2", closed_at=NOW)) for i in ids))
    changes = [
        RemediationChange(i, {"remediation_status": RemediationStatus.IN_PROGRESS, "remediation_score": 0,
                              "closed_without_remediation": True, "remediation_checked_at": NOW})
        for i in ids
    ]  # fmt: skip
    assert await rows.write("t1", changes) == 150

    # The sync merges a state meanwhile; the check then takes `closed_at` away (read, replace).
    table = await store.table("tickets")
    await table.update_entity({"PartitionKey": "t1", "RowKey": ids[0], "State": "2"}, mode=UpdateMode.MERGE)
    away = {"closed_at": None, "closed_without_remediation": False, "write_back_error": None}
    assert await rows.write("t1", [RemediationChange(ids[0], away)]) == 1

    reopened = await tickets.get("t1", ids[0])
    assert reopened is not None
    assert (reopened.state, reopened.closed_at, reopened.closed_without_remediation) == ("2", None, False)
    assert (reopened.remediation_status, reopened.remediation_score) == (RemediationStatus.IN_PROGRESS, 0.0)
    assert reopened.description == "d" * 2000  # the rest of the row is as it was
    other = await tickets.get("t1", ids[149])
    assert other is not None
    assert (other.closed_at, other.closed_without_remediation) == (NOW, True)


async def test_a_row_deleted_meanwhile_is_never_made_again(store: TableStore) -> None:
    tickets, rows = TicketRepository(store), RemediationRowRepository(store)
    kept, gone = new_ticket_id(NOW), new_ticket_id(NOW + timedelta(seconds=1))
    await tickets.add(ticket("t1", kept, "AdminMFAV2"))
    await tickets.add(ticket("t1", gone, "AdminMFAV2"))
    table = await store.table("tickets")
    await table.delete_entity("t1", gone)

    # One transaction: Table Storage refuses it whole for the missing row; sent again without it.
    written = await rows.write(
        "t1", [RemediationChange(gone, {"regressed": True}), RemediationChange(kept, {"regressed": True})]
    )

    assert written == 1
    assert await tickets.get("t1", gone) is None
    kept_row = await tickets.get("t1", kept)
    assert kept_row is not None
    assert kept_row.regressed is True
    assert await rows.write("t1", [RemediationChange(gone, {"write_back_error": None})]) == 0
    assert await tickets.get("t1", gone) is None


async def test_the_work_note_state_is_written_read_and_taken_away(store: TableStore) -> None:
    tickets, rows = TicketRepository(store), RemediationRowRepository(store)
    ticket_id = new_ticket_id(NOW)
    await tickets.add(ticket("t1", ticket_id, "AdminMFAV2"))

    sending = {"work_note_state": "sending", "work_note_at": NOW}
    assert await rows.write("t1", [RemediationChange(ticket_id, sending)]) == 1
    [row] = await rows.action_tickets("t1")
    assert (row.fields.work_note_state, row.fields.work_note_at) == ("sending", NOW)
    stored = await tickets.get("t1", ticket_id)
    assert stored is not None
    assert stored.work_note_state == "sending"

    await rows.write("t1", [RemediationChange(ticket_id, {"work_note_state": None, "work_note_at": None})])
    [row] = await rows.action_tickets("t1")
    assert (row.fields.work_note_state, row.fields.work_note_at) == (None, None)
