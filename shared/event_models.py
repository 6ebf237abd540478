"""The HTTP models of a ticket's timeline (`GET /api/tickets/{id}/events`): what happened to the
ticket, oldest first, one model per kind of event, told apart by `type`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from shared.models import ApiModel

RemediationChangeKind = Literal[
    "status_changed", "flag_raised", "flag_cleared", "write_back_sent", "write_back_failed", "work_note_added"
]


class CreatedEvent(ApiModel):
    """The ticket was asked for: by whom, in which request (`X-Request-Id` of the create)."""

    type: Literal["created"] = "created"
    at: AwareDatetime
    created_by: str
    created_by_name: str
    request_id: str | None = None


class StateChangedEvent(ApiModel):
    """ServiceNow's state moved. `at` is ServiceNow's `sys_updated_on`; `seenAt` when we first
    learnt it, `via` how (our `poll` or ServiceNow's `push`). `from` is the state before, as the
    timeline knows it (None for the first one it holds)."""

    type: Literal["state_changed"] = "state_changed"
    at: AwareDatetime
    from_: str | None = Field(default=None, alias="from")
    to: str
    servicenow_updated_on: str
    mod_count: int | None = None
    seen_at: AwareDatetime
    via: Literal["poll", "push"]


class NoteAddedEvent(ApiModel):
    """A work note or comment sent through this API (its text is on the notes endpoint)."""

    type: Literal["note_added"] = "note_added"
    at: AwareDatetime
    kind: str
    author: str


class DeletedEvent(ApiModel):
    """The sync found the ServiceNow record gone."""

    type: Literal["deleted_in_servicenow"] = "deleted_in_servicenow"
    at: AwareDatetime


class RemediationEvent(ApiModel):
    """The daily Secure Score check or its write-back changed the ticket: `name` is the flag or
    the status concerned (empty for a write-back or work note)."""

    type: Literal["remediation"] = "remediation"
    at: AwareDatetime
    change: RemediationChangeKind
    name: str = ""


TicketEvent = Annotated[
    CreatedEvent | StateChangedEvent | NoteAddedEvent | DeletedEvent | RemediationEvent,
    Field(discriminator="type"),
]


class TicketTimeline(ApiModel):
    """Oldest first. `truncated`: the ticket has more than `limit` events kept; the oldest are left
    out (at most `limit` are kept per ticket)."""

    ticket_id: str
    events: list[TicketEvent]
    truncated: bool = False
    limit: int
