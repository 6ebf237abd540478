"""The daily Secure Score check's columns of the `tickets` table (`shared.ports.RemediationRows`).

A read is one partition query for the tenant's tickets made for an improvement action (a row
without `ImprovementActionId` never compares greater than ''), of only the columns the check
reads: a page per 1,000 rows, whatever the rows' size.

Writes set fields of rows that exist and never make one:

- **Merges**, of up to 100 operations of the partition per transaction, each `If-Match: *`. When
  one of them no longer exists (its ticket was removed meanwhile) the transaction fails whole and
  Table Storage names the row; the batch is sent again without it.
- **Replaces**, for a row that must lose a value (`closed_at` of a ticket open again, the
  `write_back_error` of a write-back that has since succeeded, the points of a control no longer
  scored): a merge cannot take a property away (a null property in a merge is left out, so the
  old value stays). That row is read whole and replaced with its ETag, re-read after a lost race
  (the sync may merge a state into it meanwhile). Rare, and two requests each.

Each row write takes the timeline events its changes make (`event_rows.remediation_events`: a
status, a flag raised or cleared, a write-back sent or failed, the work note sent) into its
transaction, as upserts of deterministic keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from enum import Enum
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import TableTransactionError, UpdateMode

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import PreconditionFailed
from shared.records import Ticket
from shared.remediation import (
    RemediationChange,
    RemediationFields,
    RemediationRow,
    RemediationStatus,
    WorkNoteState,
)
from shared.stores.event_rows import TICKET_ROWS, remediation_events
from shared.stores.tables import TableStore, get_entity, storage_errors
from shared.stores.ticket_state_rows import MAX_BATCH, TICKETS, Operation, failed_condition, submit

REPLACE_ATTEMPTS = 3

# `Ticket` field -> its column (the model's PascalCase alias).
_COLUMN = {name: info.alias or name for name, info in Ticket.model_fields.items()}
_REMEDIATION_FIELDS = tuple(f.name for f in fields(RemediationFields))
_TICKET_FIELDS = (
    "improvement_action_id",
    "type",
    "number",
    "sys_id",
    "instance_url",
    "state",
    "state_updated_at",
    "status",
    "deleted_in_servicenow_at",
)
_SELECT = ["RowKey", *(_COLUMN[name] for name in (*_TICKET_FIELDS, *_REMEDIATION_FIELDS))]


class RemediationRowRepository:
    def __init__(self, store: TableStore, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock

    async def action_tickets(self, tenant_id: str) -> list[RemediationRow]:
        table = await self._store.table(TICKETS)
        rows: list[RemediationRow] = []
        with storage_errors(f"list {TICKETS}"):
            async for entity in table.query_entities(
                f"PartitionKey eq @tenant and ImprovementActionId gt @none and {TICKET_ROWS}",
                parameters={"tenant": tenant_id, "none": ""},
                select=_SELECT,
                results_per_page=1000,
            ):
                rows.append(_row(entity))
        return rows

    async def write(self, tenant_id: str, changes: Sequence[RemediationChange]) -> int:
        latest = {change.ticket_id: change for change in changes}  # one operation a row
        merges = [self._operations(tenant_id, c) for c in latest.values() if None not in c.fields.values()]
        written, size = 0, 0
        batch: list[list[Operation]] = []
        for operations in merges:  # whole rows with their events, up to 100 operations a batch
            if batch and size + len(operations) > MAX_BATCH:
                written, batch, size = written + await self._merge(batch), [], 0
            batch.append(operations)
            size += len(operations)
        if batch:
            written += await self._merge(batch)
        for change in latest.values():
            if None in change.fields.values():
                written += await self._replace(tenant_id, change)
        return written

    def _operations(self, tenant_id: str, change: RemediationChange) -> list[Operation]:
        """A row's merge (`If-Match: *`: never makes one) first, then its events."""
        row = _entity(tenant_id, change.ticket_id, change.fields)
        events = remediation_events(tenant_id, change.ticket_id, change.fields, self._clock.now())
        return [("update", row, {"mode": UpdateMode.MERGE}), *_upserts(events)]

    async def _merge(self, batch: list[list[Operation]]) -> int:
        """One transaction of rows' merges; again without a row Table Storage says does not exist."""
        while batch:
            operations = [op for row in batch for op in row]
            missing = await submit(self._store, operations)
            if missing is None:
                return len(batch)
            owner, end = 0, len(batch[0])
            while end <= missing:  # the row whose operations hold the failing one
                owner += 1
                end += len(batch[owner])
            del batch[owner]  # deleted meanwhile: never made again
        return 0

    async def _replace(self, tenant_id: str, change: RemediationChange) -> int:
        """Read the whole row, set the change on it and write it back with its ETag; 0 when the row
        is gone."""
        table = await self._store.table(TICKETS)
        for _ in range(REPLACE_ATTEMPTS):
            current = await get_entity(table, tenant_id, change.ticket_id)
            if current is None:
                return 0
            entity = {k: v for k, v in current.items() if k != "Timestamp" and not k.startswith("odata")}
            for name, value in _entity(tenant_id, change.ticket_id, change.fields, keep_none=True).items():
                if value is None:
                    entity.pop(name, None)
                else:
                    entity[name] = value
            etag = getattr(current, "metadata", {}).get("etag")
            conditional = {
                "mode": UpdateMode.REPLACE,
                "etag": etag,
                "match_condition": MatchConditions.IfNotModified,
            }
            events = remediation_events(tenant_id, change.ticket_id, change.fields, self._clock.now())
            with storage_errors(f"update {TICKETS}"):
                try:
                    await table.submit_transaction([("update", entity, conditional), *_upserts(events)])
                except TableTransactionError as error:
                    failed = failed_condition(error)
                    if failed == "missing":
                        return 0
                    if failed != "changed":
                        raise
                    continue  # written by someone else since the read: read it again
            return 1
        raise PreconditionFailed(f"Ticket row {change.ticket_id} kept changing while it was written.")


def _entity(
    tenant_id: str, ticket_id: str, values: Mapping[str, object], *, keep_none: bool = False
) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": tenant_id, "RowKey": ticket_id}
    for name, value in values.items():
        if name not in _REMEDIATION_FIELDS:
            raise ValueError(f"{name} is not a column the Secure Score check writes")
        if value is not None or keep_none:
            entity[_COLUMN[name]] = _stored(value)
    return entity


def _upserts(events: list[dict[str, Any]]) -> list[Operation]:
    return [("upsert", event, {"mode": UpdateMode.MERGE}) for event in events]


def _stored(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # the points are doubles, whatever number a payload had
    return value


def _row(entity: Mapping[str, Any]) -> RemediationRow:
    def text(name: str) -> str:
        return str(entity.get(_COLUMN[name]) or "")

    return RemediationRow(
        ticket_id=str(entity["RowKey"]),
        action_id=text("improvement_action_id"),
        type=text("type"),
        number=text("number"),
        sys_id=text("sys_id"),
        instance_url=text("instance_url"),
        state=text("state"),
        state_updated_at=_instant(entity, "state_updated_at"),
        status=text("status") or "created",  # rows older than the column
        deleted=entity.get(_COLUMN["deleted_in_servicenow_at"]) is not None,
        fields=_fields(entity),
    )


def _fields(entity: Mapping[str, Any]) -> RemediationFields:
    def flag(name: str) -> bool:
        return entity.get(_COLUMN[name]) is True

    def number(name: str) -> float | None:
        value = entity.get(_COLUMN[name])
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    return RemediationFields(
        remediation_status=_status(entity.get(_COLUMN["remediation_status"])),
        remediation_score=number("remediation_score"),
        remediation_max_score=number("remediation_max_score"),
        remediation_checked_at=_instant(entity, "remediation_checked_at"),
        remediation_completed_at=_instant(entity, "remediation_completed_at"),
        closed_at=_instant(entity, "closed_at"),
        closed_without_remediation=flag("closed_without_remediation"),
        remediated_while_open=flag("remediated_while_open"),
        regressed=flag("regressed"),
        write_back_comment=entity.get(_COLUMN["write_back_comment"]) or None,
        write_back_at=_instant(entity, "write_back_at"),
        write_back_error=entity.get(_COLUMN["write_back_error"]) or None,
        work_note_state=_work_note_state(entity.get(_COLUMN["work_note_state"])),
        work_note_at=_instant(entity, "work_note_at"),
    )


def _instant(entity: Mapping[str, Any], name: str) -> datetime | None:
    value = entity.get(_COLUMN[name])
    return value if isinstance(value, datetime) else None


def _work_note_state(value: object) -> WorkNoteState | None:
    if value == "sending" or value == "sent":
        return value
    return None


def _status(value: object) -> RemediationStatus | None:
    try:
        return RemediationStatus(str(value)) if value else None
    except ValueError:
        return None  # a status this version does not know: as if never checked
