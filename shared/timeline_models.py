"""A ticket's timeline as stored: one event row per thing that happened to the ticket, and the
state a push (ServiceNow calling us) reports. The API's view of them is in `event_models.py`.

Event rows live beside the ticket rows (`shared/stores/event_rows.py` has their keys); every
writer of a ticket row writes its event in the same transaction where Table Storage allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

EventKind = Literal["created", "state", "note", "deleted", "remediation"]
TIMELINE_LIMIT = 500  # events kept per ticket, the newest


@dataclass(frozen=True)
class PushedState:
    """A record's state as ServiceNow pushed it to us (sys_updated_on in Glide format)."""

    ticket_id: str
    table: str
    sys_id: str
    state: str
    updated: str
    mod_count: int


@dataclass(frozen=True)
class StoredEvent:
    """One event row. `at` orders the timeline: ServiceNow's `sys_updated_on` for a state, our
    clock for what we did. Only the fields of its kind are set."""

    ticket_id: str
    kind: EventKind
    at: datetime
    state: str | None = None  # created: the state ServiceNow answered; state: the new one
    servicenow_updated_on: str | None = None
    mod_count: int | None = None
    seen_by_poll_at: datetime | None = None
    seen_by_push_at: datetime | None = None
    created_by: str | None = None
    created_by_name: str | None = None
    request_id: str | None = None
    status: str | None = None  # created: the ticket's status (`creating` until ServiceNow made it)
    note_kind: str | None = None
    author: str | None = None
    change: str | None = None  # remediation: what changed (see `remediation_events`)
    name: str | None = None  # remediation: the flag or the status it concerns


@dataclass(frozen=True)
class NoteEvent:
    """A note we sent to a ticket's journal. `key` is the note's idempotency-claim key, so the
    event of a repeat is the same row."""

    kind: str
    author: str
    at: datetime
    key: str


@dataclass(frozen=True)
class RowFacts:
    """What a push decision reads of a ticket row."""

    status: str
    table: str
    sys_id: str
    mod_count: int | None


def push_applies(row: RowFacts | None, change: PushedState) -> bool:
    """Whether a pushed state goes into the row: it exists, its record was made (`created`), the
    push names its record, and the version is newer than the one it holds (or it holds none)."""
    if row is None or row.status != "created":
        return False
    if (row.table, row.sys_id) != (change.table, change.sys_id):
        return False
    return row.mod_count is None or change.mod_count > row.mod_count


def glide_instant(value: str) -> datetime | None:
    """ServiceNow's `sys_updated_on` (UTC, `YYYY-MM-DD HH:MM:SS`) as an instant; None otherwise."""
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
