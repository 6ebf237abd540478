"""What the OpenAPI document says of a ticket's timeline (merged into `_contract.OPERATIONS`);
described for users in docs/timeline.md."""

from __future__ import annotations

from datetime import UTC, datetime

from functions._contract_types import Answer, Operation, PathParameter
from shared.errors import Conflict, Forbidden, Misconfigured, NotFound, Unauthenticated, UpstreamUnavailable
from shared.event_models import (
    CreatedEvent,
    DeletedEvent,
    NoteAddedEvent,
    RemediationEvent,
    StateChangedEvent,
    TicketTimeline,
)

_TICKET_ID = "82463829341275f3a9c01"  # the example ticket of the other operations
TIMELINE = TicketTimeline(
    ticket_id=_TICKET_ID,
    limit=500,
    events=[
        CreatedEvent(
            at=datetime(2030, 1, 12, 9, 0, 1, 250000, tzinfo=UTC),
            created_by="33333333-3333-3333-3333-333333333333",
            created_by_name="Ada Admin",
            request_id="5f8e2a1c-7b3d-4e6f-9a0b-1c2d3e4f5a6b",
        ),
        StateChangedEvent(
            at=datetime(2030, 1, 12, 10, 15, 0, tzinfo=UTC),
            from_="1",
            to="2",
            servicenow_updated_on="2030-01-12 10:15:00",
            mod_count=3,
            seen_at=datetime(2030, 1, 12, 10, 20, 4, tzinfo=UTC),
            via="poll",
        ),
        NoteAddedEvent(at=datetime(2030, 1, 12, 11, 0, 0, tzinfo=UTC), kind="work_note", author="Ada Admin"),
        RemediationEvent(
            at=datetime(2030, 1, 13, 2, 0, 0, tzinfo=UTC), change="flag_raised", name="regressed"
        ),
        DeletedEvent(at=datetime(2030, 1, 14, 2, 0, 0, tzinfo=UTC)),
    ],
)

TIMELINE_OPERATIONS: dict[str, Operation] = {
    "ticket_events_list": Operation(
        summary="A ticket's timeline",
        description="What happened to the ticket, oldest first: `created` (by whom, in which request), each "
        "`state_changed` we observed (`from`, `to`, ServiceNow's `sys_updated_on` as `at`, `seenAt` and `via`: "
        "our `poll` or ServiceNow's `push`, whichever saw it first), `note_added` (kind and author; the text "
        "is on the notes endpoint), `deleted_in_servicenow`, and `remediation` changes of the daily Secure "
        "Score check and its write-back. The newest `limit` (500) events are kept per ticket; `truncated` "
        "says older ones were left out. A ticket of another tenant is 404.",
        tag="Tickets",
        answers=(Answer(200, "The timeline.", TicketTimeline, TIMELINE),),
        errors=(Unauthenticated, Forbidden, Conflict, Misconfigured, UpstreamUnavailable, NotFound),
        path={"id": PathParameter("The ticket id (21 characters).", _TICKET_ID)},
    ),
}
