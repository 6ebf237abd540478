"""The ports of a ticket's timeline: reading its events, recording a note we sent, and writing
the states ServiceNow pushes (the values are in `timeline_models.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.timeline_models import NoteEvent, PushedState, StoredEvent


class TicketEvents(Protocol):
    async def events(self, tenant_id: str, ticket_id: str, *, limit: int) -> tuple[list[StoredEvent], bool]:
        """The ticket's newest `limit` events, newest first, and whether older ones exist."""
        ...


class NoteEvents(Protocol):
    async def record_note(self, tenant_id: str, ticket_id: str, note: NoteEvent) -> None:
        """Record a note sent to the ticket (an upsert: recording it again is harmless)."""
        ...


class PushedStates(Protocol):
    async def apply_pushed(self, tenant_id: str, changes: Sequence[PushedState]) -> int:
        """Write each change whose mod_count is newer than the row's ServicenowModCount (or the row
        has none) and whose table/sys_id are the row's; skip rows that do not exist or are not
        `created`. Per row: a read, then an ETag-conditional merge of State/StateUpdatedAt/
        ServicenowUpdatedOn/ServicenowModCount and the event row (SeenByPushAt) in one transaction;
        on 412 re-read once and decide again. Returns the number of rows changed."""
        ...
