"""A ticket's timeline (`GET /api/tickets/{id}/events`): its stored events, newest `limit` of them,
told oldest first.

What is derived at read time, because no single writer knows it:

- `from` of a state change is the `to` of the state before it (the created event's state for the
  first); the blind sync cannot know it when it writes.
- A state version whose state is the one before is no state change (a work note moved
  `sys_updated_on`, or the first version, which is the state the ticket was created in): left out.
- `via` and `seenAt`: whichever of our poll and ServiceNow's push saw the version first.

Order: the created event first, then by time. A state's time is ServiceNow's `sys_updated_on`
(whole seconds), the others' ours (milliseconds): within one second the order between a state
change and something we did is a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from shared.errors import NotFound
from shared.event_models import (
    CreatedEvent,
    DeletedEvent,
    NoteAddedEvent,
    RemediationChangeKind,
    RemediationEvent,
    StateChangedEvent,
    TicketEvent,
    TicketTimeline,
)
from shared.ports import TicketStore
from shared.records import TICKET_ID, Ticket
from shared.timeline_models import TIMELINE_LIMIT, StoredEvent
from shared.timeline_ports import TicketEvents

_RANK = {"created": 0, "state": 1, "note": 2, "remediation": 3, "deleted": 4}  # order within one instant
_CHANGES: frozenset[str] = frozenset(get_args(RemediationChangeKind))


class TicketTimelines:
    def __init__(self, *, tickets: TicketStore, events: TicketEvents, limit: int = TIMELINE_LIMIT) -> None:
        self._tickets = tickets
        self._events = events
        self._limit = limit

    async def timeline(self, tenant_id: str, ticket_id: str) -> TicketTimeline:
        """Raises NotFound: no such ticket of the tenant."""
        ticket = await self._tickets.get(tenant_id, ticket_id) if TICKET_ID.match(ticket_id) else None
        if ticket is None:
            raise NotFound("No such ticket.")
        stored, truncated = await self._events.events(tenant_id, ticket_id, limit=self._limit)
        return TicketTimeline(
            ticket_id=ticket_id,
            events=derive([created_event(ticket, known_state=not truncated), *stored]),
            truncated=truncated,
            limit=self._limit,
        )


def created_event(ticket: Ticket, *, known_state: bool = True) -> StoredEvent:
    """The `created` event, which the ticket's row is (no row of its own: a create stays one write).
    Without `known_state` (older events left out) the first state shown comes from an unknown one."""
    return StoredEvent(
        ticket.ticket_id,
        "created",
        ticket.created_at,
        state=ticket.created_state if known_state else None,
        created_by=ticket.created_by,
        created_by_name=ticket.created_by_name,
        request_id=ticket.request_id,
        status=ticket.status,
    )


def derive(stored: Sequence[StoredEvent]) -> list[TicketEvent]:
    """The API's events, oldest first, from stored events in any order."""
    # Nothing happens to a ticket before it is created, whatever the clocks say: ServiceNow's times
    # are whole seconds, so a record changed in the second it was made would sort before our create.
    ordered = sorted(stored, key=lambda e: (e.kind != "created", e.at, _RANK[e.kind], e.mod_count or -1))
    current = next((e.state for e in ordered if e.kind == "created"), None)
    events: list[TicketEvent] = []
    for event in ordered:
        if event.kind == "state":
            if event.state is None or event.state == current:
                continue
            events.append(_state_change(event, current))
            current = event.state
            continue
        shown = _other(event)
        if shown is not None:
            events.append(shown)
    return events


def _state_change(event: StoredEvent, before: str | None) -> StateChangedEvent:
    seen = [(at, via) for at, via in ((event.seen_by_poll_at, "poll"), (event.seen_by_push_at, "push")) if at]
    seen_at, via = min(seen) if seen else (event.at, "poll")
    return StateChangedEvent(
        at=event.at,
        from_=before,
        to=event.state or "",
        servicenow_updated_on=event.servicenow_updated_on or "",
        mod_count=event.mod_count,
        seen_at=seen_at,
        via="push" if via == "push" else "poll",
    )


def _other(event: StoredEvent) -> TicketEvent | None:
    if event.kind == "created":
        return CreatedEvent(
            at=event.at,
            created_by=event.created_by or "",
            created_by_name=event.created_by_name or "",
            request_id=event.request_id,
        )
    if event.kind == "note":
        return NoteAddedEvent(at=event.at, kind=event.note_kind or "", author=event.author or "")
    if event.kind == "deleted":
        return DeletedEvent(at=event.at)
    if event.kind == "remediation" and event.change in _CHANGES:
        return RemediationEvent.model_validate(
            {"at": event.at, "change": event.change, "name": event.name or ""}
        )
    return None  # a change this version does not know
