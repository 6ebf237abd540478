"""A ticket's timeline: the events its writers record (through the fake of the ticket store, which
keeps the real store's semantics), what the read derives from them, and the decisions of a pushed
state."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from shared.errors import NotFound
from shared.event_models import CreatedEvent, NoteAddedEvent, StateChangedEvent
from shared.records import Ticket, TicketStateChange, new_ticket_id
from shared.services.ticket_events import TicketTimelines, derive
from shared.timeline_models import NoteEvent, PushedState, StoredEvent
from tests.fakes.clock import FakeClock
from tests.fakes.tickets import InMemoryTickets

NOW = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
TENANT = "11111111-1111-1111-1111-111111111111"
OTHER = "99999999-9999-9999-9999-999999999999"
SYS_ID = "9d385017c611228701d22104cc95c371"


def ticket(tenant_id: str = TENANT, **changes: object) -> Ticket:
    values: dict[str, object] = {
        "tenant_id": tenant_id, "ticket_id": new_ticket_id(NOW), "type": "incident", "sys_id": SYS_ID,
        "number": "INC0010001", "instance_url": "https://contoso.service-now.com", "name": "Require MFA",
        "description": "", "priority": 2, "due_date": date(2030, 4, 1), "recommendation_source": "user",
        "recommendation_category": "Identity", "created_by": "u-1", "created_by_name": "Ada Admin",
        "created_at": NOW, "state": "1", "state_updated_at": NOW, **changes,
    }  # fmt: skip
    return Ticket.model_validate(values)


def glide(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def polled(ticket_id: str, state: str, minutes: int, mod_count: int, seen_minutes: int) -> TicketStateChange:
    at = NOW + timedelta(minutes=minutes)
    seen = NOW + timedelta(minutes=seen_minutes)
    return TicketStateChange(ticket_id, state, at, glide(at), mod_count, seen)


def pushed(ticket_id: str, state: str, minutes: int, mod_count: int, **changes: str) -> PushedState:
    fields = {"table": "incident", "sys_id": SYS_ID, **changes}
    return PushedState(
        ticket_id,
        fields["table"],
        fields["sys_id"],
        state,
        glide(NOW + timedelta(minutes=minutes)),
        mod_count,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW + timedelta(hours=1))


@pytest.fixture
def tickets(clock: FakeClock) -> InMemoryTickets:
    return InMemoryTickets(clock)


async def test_a_timeline_tells_what_happened_oldest_first(
    tickets: InMemoryTickets, clock: FakeClock
) -> None:
    row = await tickets.add(ticket())
    ticket_id = row.ticket_id
    await tickets.merge_states(TENANT, [polled(ticket_id, "1", 0, 0, 1)])  # the first version: no change
    await tickets.merge_states(TENANT, [polled(ticket_id, "2", 10, 1, 12)])
    await tickets.merge_states(TENANT, [polled(ticket_id, "2", 20, 2, 22)])  # a work note moved it
    note = NoteEvent(kind="work_note", author="Ada Admin", at=NOW + timedelta(minutes=30), key="k" * 64)
    await tickets.record_note(TENANT, ticket_id, note)
    await tickets.record_note(TENANT, ticket_id, note)  # a repeat: the same event
    await tickets.apply_state_changes(TENANT, [polled(ticket_id, "6", 40, 3, 45)])
    await tickets.mark_deleted(TENANT, [ticket_id], NOW + timedelta(hours=2))

    timeline = await TicketTimelines(tickets=tickets, events=tickets).timeline(TENANT, ticket_id)

    assert [event.type for event in timeline.events] == [
        "created", "state_changed", "note_added", "state_changed", "deleted_in_servicenow",
    ]  # fmt: skip
    created, first, added, second, _ = timeline.events
    assert isinstance(created, CreatedEvent)
    assert created.created_by_name == "Ada Admin"
    assert isinstance(first, StateChangedEvent)
    assert isinstance(second, StateChangedEvent)
    assert (first.from_, first.to, first.via, first.mod_count) == ("1", "2", "poll", 1)
    assert first.seen_at == NOW + timedelta(minutes=12)
    assert (second.from_, second.to) == ("2", "6")
    assert isinstance(added, NoteAddedEvent)
    assert (added.kind, added.author) == ("work_note", "Ada Admin")
    assert timeline.truncated is False
    assert tickets.rows[(TENANT, ticket_id)].servicenow_mod_count == 3


async def test_the_answer_names_from_as_from(tickets: InMemoryTickets) -> None:
    row = await tickets.add(ticket())
    await tickets.merge_states(TENANT, [polled(row.ticket_id, "2", 10, 1, 12)])

    body = (
        await TicketTimelines(tickets=tickets, events=tickets).timeline(TENANT, row.ticket_id)
    ).model_dump(by_alias=True, mode="json")

    assert body["events"][1] | {"seenAt": "x"} == {
        "type": "state_changed", "at": "2030-03-01T09:10:00Z", "from": "1", "to": "2",
        "servicenowUpdatedOn": "2030-03-01 09:10:00", "modCount": 1, "seenAt": "x", "via": "poll",
    }  # fmt: skip
    assert (body["ticketId"], body["limit"], body["truncated"]) == (row.ticket_id, 500, False)


async def test_a_version_seen_by_poll_and_push_is_one_event_via_the_first(
    tickets: InMemoryTickets, clock: FakeClock
) -> None:
    row = await tickets.add(ticket())
    clock.advance(minutes=-49)  # the push arrives at 09:11, a minute after ServiceNow's update
    assert await tickets.apply_pushed(TENANT, [pushed(row.ticket_id, "2", 10, 1)]) == 1
    await tickets.merge_states(TENANT, [polled(row.ticket_id, "2", 10, 1, 15)])  # the poll, later

    timeline = await TicketTimelines(tickets=tickets, events=tickets).timeline(TENANT, row.ticket_id)

    [_, change] = timeline.events
    assert isinstance(change, StateChangedEvent)
    assert (change.via, change.seen_at) == ("push", NOW + timedelta(minutes=11))


def test_a_poll_first_is_via_poll_and_unknown_kinds_are_left_out() -> None:
    at = NOW + timedelta(minutes=10)
    stored = [
        StoredEvent("t", "state", at, state="3", servicenow_updated_on=glide(at), mod_count=4,
                    seen_by_poll_at=at + timedelta(seconds=5), seen_by_push_at=at + timedelta(seconds=9)),
        StoredEvent("t", "remediation", at, change="something_new", name="x"),
        StoredEvent("t", "remediation", at, change="flag_raised", name="regressed"),
    ]  # fmt: skip

    events = derive(stored)

    assert [e.type for e in events] == ["state_changed", "remediation"]
    assert isinstance(events[0], StateChangedEvent)
    assert (events[0].from_, events[0].via) == (None, "poll")  # no created event: the state before is unknown


async def test_only_the_newest_events_are_read_and_truncation_is_said(tickets: InMemoryTickets) -> None:
    row = await tickets.add(ticket())
    changes = [polled(row.ticket_id, str(n % 2 + 1), n + 1, n + 1, n + 2) for n in range(9)]
    for change in changes:
        await tickets.merge_states(TENANT, [change])

    timeline = await TicketTimelines(tickets=tickets, events=tickets, limit=4).timeline(TENANT, row.ticket_id)

    assert timeline.truncated is True
    assert timeline.limit == 4
    assert [e.type for e in timeline.events] == ["created"] + ["state_changed"] * 4  # created is kept
    assert [e.to for e in timeline.events if isinstance(e, StateChangedEvent)] == ["2", "1", "2", "1"]
    first = timeline.events[1]
    assert isinstance(first, StateChangedEvent)
    assert first.from_ is None


async def test_another_tenants_ticket_and_a_malformed_id_are_not_found(tickets: InMemoryTickets) -> None:
    row = await tickets.add(ticket(OTHER))
    service = TicketTimelines(tickets=tickets, events=tickets)

    with pytest.raises(NotFound):
        await service.timeline(TENANT, row.ticket_id)
    with pytest.raises(NotFound):
        await service.timeline(TENANT, "not-a-ticket")


async def test_a_creating_ticket_finished_keeps_its_request_and_takes_its_state(
    tickets: InMemoryTickets,
) -> None:
    row = await tickets.add(ticket(status="creating", sys_id="", number="", state=""))
    await tickets.replace(row.model_copy(update={"status": "created", "sys_id": SYS_ID, "state": "1"}))
    await tickets.merge_states(TENANT, [polled(row.ticket_id, "1", 1, 0, 2)])

    timeline = await TicketTimelines(tickets=tickets, events=tickets).timeline(TENANT, row.ticket_id)

    assert [e.type for e in timeline.events] == ["created"]  # the first version is the created state


# --- pushed states ---------------------------------------------------------------------------------


async def test_a_push_newer_than_the_row_is_written(tickets: InMemoryTickets) -> None:
    row = await tickets.add(ticket())
    await tickets.merge_states(TENANT, [polled(row.ticket_id, "2", 10, 3, 12)])

    assert await tickets.apply_pushed(TENANT, [pushed(row.ticket_id, "6", 20, 4)]) == 1
    stored = tickets.rows[(TENANT, row.ticket_id)]
    assert (stored.state, stored.servicenow_mod_count, stored.servicenow_updated_on) == (
        "6",
        4,
        glide(NOW + timedelta(minutes=20)),
    )


@pytest.mark.parametrize("mod_count", [2, 3])
async def test_a_push_older_or_equal_to_the_row_is_skipped(tickets: InMemoryTickets, mod_count: int) -> None:
    row = await tickets.add(ticket())
    await tickets.merge_states(TENANT, [polled(row.ticket_id, "2", 10, 3, 12)])

    assert await tickets.apply_pushed(TENANT, [pushed(row.ticket_id, "6", 5, mod_count)]) == 0
    assert tickets.rows[(TENANT, row.ticket_id)].state == "2"


async def test_a_push_to_a_row_without_a_mod_count_is_written(tickets: InMemoryTickets) -> None:
    row = await tickets.add(ticket())  # made before the column existed, or never synced

    assert await tickets.apply_pushed(TENANT, [pushed(row.ticket_id, "2", 5, 0)]) == 1


@pytest.mark.parametrize("changes", [{"sys_id": "f" * 32}, {"table": "change_request"}])
async def test_a_push_of_another_record_is_skipped(tickets: InMemoryTickets, changes: dict[str, str]) -> None:
    row = await tickets.add(ticket())

    assert await tickets.apply_pushed(TENANT, [pushed(row.ticket_id, "2", 5, 1, **changes)]) == 0
    assert tickets.rows[(TENANT, row.ticket_id)].state == "1"


async def test_a_push_for_a_missing_or_unfinished_row_is_skipped(tickets: InMemoryTickets) -> None:
    creating = await tickets.add(ticket(status="creating"))
    other_tenants = await tickets.add(ticket(OTHER))

    changes = [
        pushed(new_ticket_id(NOW), "2", 5, 1),
        pushed(creating.ticket_id, "2", 5, 1),
        pushed(other_tenants.ticket_id, "2", 5, 1),
    ]
    assert await tickets.apply_pushed(TENANT, changes) == 0


async def test_of_several_pushes_of_one_ticket_the_newest_is_written(tickets: InMemoryTickets) -> None:
    row = await tickets.add(ticket())

    written = await tickets.apply_pushed(
        TENANT, [pushed(row.ticket_id, "6", 20, 5), pushed(row.ticket_id, "2", 10, 4)]
    )

    assert written == 1
    assert tickets.rows[(TENANT, row.ticket_id)].state == "6"


def test_the_created_event_comes_first_though_servicenow_s_second_is_earlier() -> None:
    made = NOW + timedelta(milliseconds=700)
    stored = [
        StoredEvent(
            "t", "state", NOW, state="2", servicenow_updated_on=glide(NOW), mod_count=1, seen_by_poll_at=made
        ),
        StoredEvent("t", "created", made, state="1", created_by="u", created_by_name="U"),
    ]

    events = derive(stored)

    assert [e.type for e in events] == ["created", "state_changed"]
    assert isinstance(events[1], StateChangedEvent)
    assert events[1].from_ == "1"
