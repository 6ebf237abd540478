"""The rows of a ticket's timeline in the `tickets` table, beside the ticket rows of the tenant's
partition so that an event shares its ticket row's transaction.

RowKey `e~{ticket id}~{inverted ms}~{discriminator}`: ticket ids start with a digit, so every
event key sorts after every ticket id and a ticket query bounds its RowKeys below `e`
(`TICKET_ROWS`). Within a ticket, keys sort newest first (13-digit inverted epoch milliseconds of
the event's time), so one query of `top` rows returns the newest. The discriminator makes the key
deterministic per event, so a retried write is the same upsert:

    s{mod count:010d}   a state version: (ticket, sys_updated_on, sys_mod_count), poll or push
    n{note key}         a note we sent (its idempotency claim)
    d                   the record was found deleted in ServiceNow
    r{change}-{name}    a Secure Score check or write-back change
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from shared.records import TicketStateChange
from shared.remediation_models import FLAG_FIELDS
from shared.timeline_models import EventKind, NoteEvent, PushedState, StoredEvent

TICKET_ROWS = "RowKey lt 'e'"  # ticket ids only: every event key starts with `e~`
_MAX_MS = 10**13 - 1
_KINDS: frozenset[str] = frozenset({"created", "state", "note", "deleted", "remediation"})


def prefix(ticket_id: str) -> str:
    return f"e~{ticket_id}~"


def prefix_end(ticket_id: str) -> str:
    return f"e~{ticket_id}~~"  # `~` sorts after every digit: past the ticket's last event


def event_key(ticket_id: str, at: datetime, discriminator: str) -> str:
    millis = int(at.timestamp() * 1000)
    return f"{prefix(ticket_id)}{_MAX_MS - millis:013d}~{discriminator}"


def _row(tenant_id: str, ticket_id: str, kind: EventKind, at: datetime, disc: str) -> dict[str, Any]:
    key = event_key(ticket_id, at, disc)
    return {"PartitionKey": tenant_id, "RowKey": key, "Kind": kind, "TicketId": ticket_id, "At": at}


def state_event(
    tenant_id: str, ticket_id: str, at: datetime, updated: str, mod_count: int | None, to: str
) -> dict[str, Any]:
    """A state version's row, keyed by (ticket, sys_updated_on, sys_mod_count) whoever saw it: the
    caller adds its own time (`SeenByPollAt`, `SeenByPushAt`), and a merge keeps the other's."""
    disc = "s" + (f"{mod_count:010d}" if mod_count is not None else "-")
    entity = _row(tenant_id, ticket_id, "state", at, disc)
    entity.update(ServicenowUpdatedOn=updated, To=to)
    if mod_count is not None:
        entity["ModCount"] = mod_count
    return entity


def polled_event(tenant_id: str, change: TicketStateChange) -> dict[str, Any] | None:
    """The event of a state the sync listed; None without ServiceNow's update time (no key)."""
    if not change.servicenow_updated_on:
        return None
    at, updated = change.state_updated_at, change.servicenow_updated_on
    entity = state_event(tenant_id, change.ticket_id, at, updated, change.mod_count, change.state)
    entity["SeenByPollAt"] = change.seen_at or datetime.now(UTC)
    return entity


def pushed_event(tenant_id: str, change: PushedState, at: datetime, now: datetime) -> dict[str, Any]:
    entity = state_event(tenant_id, change.ticket_id, at, change.updated, change.mod_count, change.state)
    entity["SeenByPushAt"] = now
    return entity


def note_event(tenant_id: str, ticket_id: str, note: NoteEvent) -> dict[str, Any]:
    entity = _row(tenant_id, ticket_id, "note", note.at, f"n{note.key[:32]}")
    entity.update(NoteKind=note.kind, Author=note.author)
    return entity


def deleted_event(tenant_id: str, ticket_id: str, at: datetime) -> dict[str, Any]:
    return _row(tenant_id, ticket_id, "deleted", at, "d")


def remediation_event(tenant_id: str, ticket_id: str, at: datetime, change: str, name: str) -> dict[str, Any]:
    entity = _row(tenant_id, ticket_id, "remediation", at, f"r{change}-{name}")
    entity.update(Change=change, Name=name)
    return entity


def stored_event(entity: Mapping[str, Any]) -> StoredEvent | None:
    """The event a row holds; None for a row of a kind this version does not know."""
    kind, at = entity.get("Kind"), entity.get("At")
    if kind not in _KINDS or not isinstance(at, datetime):
        return None

    def text(name: str) -> str | None:
        value = entity.get(name)
        return str(value) if value is not None else None

    def instant(name: str) -> datetime | None:
        value = entity.get(name)
        return value if isinstance(value, datetime) else None

    mod_count = entity.get("ModCount")
    return StoredEvent(
        ticket_id=str(entity.get("TicketId") or ""),
        kind=cast(EventKind, kind),
        at=at,
        state=text("To") if kind == "state" else text("State"),
        servicenow_updated_on=text("ServicenowUpdatedOn"),
        mod_count=mod_count if isinstance(mod_count, int) and not isinstance(mod_count, bool) else None,
        seen_by_poll_at=instant("SeenByPollAt"),
        seen_by_push_at=instant("SeenByPushAt"),
        created_by=text("CreatedBy"),
        created_by_name=text("CreatedByName"),
        request_id=text("RequestId"),
        status=text("Status"),
        note_kind=text("NoteKind"),
        author=text("Author"),
        change=text("Change"),
        name=text("Name"),
    )


def remediation_events(
    tenant_id: str, ticket_id: str, fields: Mapping[str, object], now: datetime
) -> list[dict[str, Any]]:
    """The events a write of the Secure Score check's columns makes: the fields it changes, each at
    the time the change itself records where it has one (so a retried write is the same row)."""

    def instant(name: str) -> datetime:
        value = fields.get(name)
        return value if isinstance(value, datetime) else now

    found: list[tuple[str, str, datetime]] = []
    status = fields.get("remediation_status")
    if status is not None:
        found.append(
            ("status_changed", str(getattr(status, "value", status)), instant("remediation_checked_at"))
        )
    for flag, name in FLAG_FIELDS.items():
        if name in fields:
            change = "flag_raised" if fields[name] is True else "flag_cleared"
            found.append((change, flag, instant("remediation_checked_at")))
    if fields.get("write_back_at") is not None:
        found.append(("write_back_sent", "", instant("write_back_at")))
    if fields.get("write_back_error"):
        found.append(("write_back_failed", "", now))
    if fields.get("work_note_state") == "sent":
        found.append(("work_note_added", "", instant("work_note_at")))
    return [remediation_event(tenant_id, ticket_id, at, change, name) for change, name, at in found]
