"""The sync's writes of the `tickets` table (`TicketRepository` delegates here): the ticket index
it compares, state merges and deletion marks, each with its timeline event in the same
transaction (`event_rows.py`). An event is an upsert-merge of a deterministic key, so a retried
transaction writes it again harmlessly; two operations a change leave room for 50 changes in
Table Storage's 100 operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from azure.data.tables import TableErrorCode, TableTransactionError, UpdateMode

from shared.records import StateChangeResult, TicketStateChange, TicketSyncEntry
from shared.stores.event_rows import TICKET_ROWS, deleted_event, polled_event
from shared.stores.tables import TableStore, storage_errors

TICKETS = "tickets"
MAX_BATCH = 100  # Table Storage's limit of operations in one transaction
MAX_CHANGES = MAX_BATCH // 2  # changes in one transaction: each brings its event
_SYNC_COLUMNS = ["RowKey", "Type", "SysId", "State", "CreatedAt", "DeletedInServicenowAt"]

Operation = tuple[str, dict[str, Any], dict[str, Any]]


def state_operations(tenant_id: str, change: TicketStateChange) -> list[Operation]:
    """The merge of a new state into its row (`If-Match: *`: never makes one) and its event."""
    entity: dict[str, Any] = {
        "PartitionKey": tenant_id,
        "RowKey": change.ticket_id,
        "State": change.state,
        "StateUpdatedAt": change.state_updated_at,
    }
    if change.servicenow_updated_on is not None:
        entity["ServicenowUpdatedOn"] = change.servicenow_updated_on
    if change.mod_count is not None:
        entity["ServicenowModCount"] = change.mod_count
    operations: list[Operation] = [("update", entity, {"mode": UpdateMode.MERGE})]
    event = polled_event(tenant_id, change)
    if event is not None:
        operations.append(("upsert", event, {"mode": UpdateMode.MERGE}))
    return operations


def failed_condition(error: TableTransactionError) -> Literal["missing", "exists", "changed"] | None:
    """Which row condition failed a transaction, if one did (by error code, else HTTP status)."""
    code, status = getattr(error, "error_code", None), error.status_code
    if code == TableErrorCode.RESOURCE_NOT_FOUND or status == 404:
        return "missing"
    if code == TableErrorCode.ENTITY_ALREADY_EXISTS or status == 409:
        return "exists"
    if code == TableErrorCode.UPDATE_CONDITION_NOT_SATISFIED or status == 412:
        return "changed"
    return None


async def submit(store: TableStore, operations: list[Operation]) -> int | None:
    """One transaction; None once written, else the index of the operation naming a missing row
    (nothing was written). Any other failure raises (`UpstreamUnavailable`)."""
    table = await store.table(TICKETS)
    with storage_errors(f"update {TICKETS}"):
        try:
            await table.submit_transaction(operations)
        except TableTransactionError as error:
            if failed_condition(error) != "missing":
                raise
            return error.index if 0 <= error.index < len(operations) else 0
    return None


async def merge_states(store: TableStore, tenant_id: str, changes: Sequence[TicketStateChange]) -> str | None:
    latest = {change.ticket_id: change for change in changes}  # one operation a row
    if len(latest) > MAX_CHANGES:
        raise ValueError(f"a transaction holds at most {MAX_CHANGES} state changes with their events")
    operations: list[Operation] = []
    owners: list[str] = []
    for change in latest.values():
        ops = state_operations(tenant_id, change)
        operations.extend(ops)
        owners.extend(change.ticket_id for _ in ops)
    if not operations:
        return None
    failed = await submit(store, operations)
    return None if failed is None else owners[failed]


async def apply_state_changes(
    store: TableStore, tenant_id: str, changes: Sequence[TicketStateChange]
) -> StateChangeResult:
    latest = list({change.ticket_id: change for change in changes}.values())  # the last word on each
    applied, missing = 0, []
    for start in range(0, len(latest), MAX_CHANGES):
        batch = latest[start : start + MAX_CHANGES]
        operations = [op for change in batch for op in state_operations(tenant_id, change)]
        if await submit(store, operations) is None:
            applied += len(batch)
            continue
        for change in batch:  # a row is missing: each row (and its event) on its own
            if await submit(store, state_operations(tenant_id, change)) is None:
                applied += 1
            else:
                missing.append(change.ticket_id)
    return StateChangeResult(applied=applied, missing=tuple(missing))


async def mark_deleted(store: TableStore, tenant_id: str, ticket_ids: Sequence[str], at: datetime) -> int:
    """Flag tickets whose record is gone from ServiceNow (a merge), with the event, 50 a transaction."""
    for start in range(0, len(ticket_ids), MAX_CHANGES):
        operations: list[Operation] = []
        for ticket_id in ticket_ids[start : start + MAX_CHANGES]:
            row = {"PartitionKey": tenant_id, "RowKey": ticket_id, "DeletedInServicenowAt": at}
            operations.append(("update", row, {"mode": UpdateMode.MERGE}))
            operations.append(("upsert", deleted_event(tenant_id, ticket_id, at), {"mode": UpdateMode.MERGE}))
        table = await store.table(TICKETS)
        with storage_errors(f"update {TICKETS}"):
            await table.submit_transaction(operations)
    return len(ticket_ids)


async def sync_index(store: TableStore, tenant_id: str) -> dict[str, TicketSyncEntry]:
    """Every ticket of the tenant by id, reading only the columns the sync compares.

    One partition query (ticket rows only): a page per 1,000 rows is one storage transaction.
    """
    table = await store.table(TICKETS)
    index: dict[str, TicketSyncEntry] = {}
    with storage_errors(f"list {TICKETS}"):
        async for entity in table.query_entities(
            f"PartitionKey eq @tenant and {TICKET_ROWS}",
            parameters={"tenant": tenant_id},
            select=_SYNC_COLUMNS,
            results_per_page=1000,
        ):
            created = entity.get("CreatedAt")
            index[str(entity["RowKey"])] = TicketSyncEntry(
                ticket_id=str(entity["RowKey"]),
                type=str(entity.get("Type") or ""),
                sys_id=str(entity.get("SysId") or ""),
                state=str(entity.get("State") or ""),
                created_at=created if isinstance(created, datetime) else None,
                deleted=entity.get("DeletedInServicenowAt") is not None,
            )
    return index
