"""A ticket's notes: read from the journal or, when its ACL hides it, from the record's display
values; added once per Idempotency-Key, looked for in the journal after an ambiguous failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from shared.errors import (
    BadRequest,
    Conflict,
    IdempotencyKeyReused,
    NotFound,
    TicketDeletedInServiceNow,
    TicketNotCreated,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.identity import Caller, Role
from shared.models import ConnectionStatus
from shared.note_models import AddNote, JournalDisplay
from shared.records import Connection, Ticket, new_ticket_id
from shared.services.journal_display import display_notes, parse_entries
from shared.services.ticket_notes import TicketNotes
from shared.services.ticket_policy import TicketingPolicy
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.servicenow_tables import FakeServiceNowTables
from tests.fakes.tickets import InMemoryClaims, InMemoryTickets
from tests.fakes.work_notes import INTEGRATION_USER, FakeWorkNotes, WithJournal

NOW = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
TENANT = "11111111-1111-1111-1111-111111111111"
INSTANCE = "https://contoso.service-now.com"
SYS_ID = "9d385017c611228701d22104cc95c371"
CALLER = Caller(TENANT, "22222222-2222-2222-2222-222222222222", "Wendy Writer", frozenset({Role.READ_WRITE}))
NOTE = AddNote(kind="work_note", text="Rolled out to the pilot group.")


@dataclass
class World:
    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW))
    tickets: InMemoryTickets = field(default_factory=InMemoryTickets)
    connections: InMemoryConnectionRepository = field(default_factory=InMemoryConnectionRepository)
    claims: InMemoryClaims = field(default_factory=InMemoryClaims)

    def __post_init__(self) -> None:
        self.notes = FakeWorkNotes(clock=self.clock)
        self.records = WithJournal(FakeServiceNowTables(self.clock), self.notes)
        self.claims.clock = self.clock
        self.connections.rows[TENANT] = Connection(
            tenant_id=TENANT,
            instance="contoso",
            instance_url=INSTANCE,
            client_id="abc",
            status=ConnectionStatus.CONNECTED,
            updated_at=NOW,
        )
        self.ticket_id = self.ticket()

    def ticket(self, **changes: object) -> str:
        ticket_id = new_ticket_id(self.clock.now())
        row = Ticket(
            tenant_id=TENANT,
            ticket_id=ticket_id,
            type="incident",
            sys_id=SYS_ID,
            number="INC0010001",
            instance_url=INSTANCE,
            name="Require MFA",
            description="",
            priority=2,
            due_date=date(2030, 4, 1),
            recommendation_source="user",
            recommendation_category="Identity",
            created_by=CALLER.user_id,
            created_by_name=CALLER.name,
            created_at=NOW,
            state="1",
            state_updated_at=NOW,
        )
        self.tickets.put(row.model_copy(update=changes))
        self.clock.advance(seconds=0.001)
        return ticket_id

    @property
    def service(self) -> TicketNotes:
        return TicketNotes(
            tickets=self.tickets,
            connections=self.connections,
            records=self.records,
            journal=self.notes,
            claims=self.claims,
            policy=TicketingPolicy(),
            clock=self.clock,
            events=self.tickets,
        )

    async def note_events(self) -> list[tuple[str | None, str | None]]:
        events, _ = await self.tickets.events(TENANT, self.ticket_id, limit=500)
        return [(event.note_kind, event.author) for event in events if event.kind == "note"]


@pytest.fixture
def world() -> World:
    return World()


# --- display values --------------------------------------------------------------------------------


def test_display_values_are_parsed_newest_first_with_their_zone_taken_away() -> None:
    display = JournalDisplay(
        work_notes="2030-03-01 11:00:05 - Ada Admin (Work notes)\nSecond\nline two\n\n"
        "2030-03-01 10:00:00 - M365 Integration (Work notes)\nFirst\n\n",
        comments="2030-03-01 10:30:00 - Carl Caller (Additional comments)\nA comment\n\n",
        updated_display="2030-03-01 13:00:00",
        updated_value="2030-03-01 12:00:00",  # the user is an hour ahead of UTC
    )
    notes = display_notes(display)
    assert [(n.kind, n.text, n.author, n.created_at.hour, n.created_at.minute) for n in notes] == [
        ("work_note", "Second\nline two", "Ada Admin", 10, 0),
        ("comment", "A comment", "Carl Caller", 9, 30),
        ("work_note", "First", "M365 Integration", 9, 0),
    ]
    assert all(n.created_at.tzinfo is not None and n.created_at.utcoffset() == timedelta(0) for n in notes)


def test_display_values_without_a_readable_update_time_are_taken_as_utc() -> None:
    notes = display_notes(JournalDisplay(work_notes="2030-03-01 10:00:00 - A (Work notes)\nx\n\n"))
    assert notes[0].created_at == datetime(2030, 3, 1, 10, tzinfo=UTC)


def test_a_text_with_blank_lines_stays_one_entry() -> None:
    text = "2030-03-01 10:00:00 - A (Additional comments)\npara one\n\npara two\n\n"
    assert [n.text for n in parse_entries(text)] == ["para one\n\npara two"]


# --- reading -----------------------------------------------------------------------------------------


async def test_notes_come_from_the_journal_newest_first(world: World) -> None:
    await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    world.clock.advance(seconds=5)
    await world.service.add(CALLER, world.ticket_id, AddNote(kind="comment", text="Hello"), "k2")
    listed = await world.service.notes(TENANT, world.ticket_id)
    assert listed.source == "journal"
    assert not listed.truncated
    assert [(n.kind, n.text, n.author) for n in listed.notes] == [
        ("comment", "Hello", INTEGRATION_USER),
        ("work_note", NOTE.text, INTEGRATION_USER),
    ]


async def test_a_hidden_journal_falls_back_to_the_display_values(world: World) -> None:
    await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    world.notes.hidden = True
    world.notes.display_offset = timedelta(hours=-5)
    listed = await world.service.notes(TENANT, world.ticket_id)
    assert listed.source == "display_values"
    assert [(n.kind, n.text, n.author, n.created_at) for n in listed.notes] == [
        ("work_note", NOTE.text, "M365 Integration", NOW)
    ]


async def test_no_notes_anywhere_is_an_empty_journal(world: World) -> None:
    world.notes.hidden = True
    assert (await world.service.notes(TENANT, world.ticket_id)).model_dump() == {
        "source": "journal",
        "notes": [],
        "truncated": False,
    }


async def test_a_ticket_without_a_record_has_no_notes(world: World) -> None:
    creating = world.ticket(status="creating", sys_id="", number="")
    failed = world.ticket(status="failed", sys_id="", number="", failure_reason="refused")
    assert (await world.service.notes(TENANT, creating)).notes == []
    for ticket in (creating, failed):
        with pytest.raises(TicketNotCreated) as refused:
            await world.service.add(CALLER, ticket, NOTE, "k1")
        assert refused.value.code == "ticket_not_created"
    assert world.notes.attempts == 0  # nothing was sent


async def test_unknown_and_deleted_tickets(world: World) -> None:
    with pytest.raises(NotFound):
        await world.service.notes(TENANT, "not-a-ticket")
    deleted = world.ticket(deleted_in_servicenow_at=NOW)
    with pytest.raises(TicketDeletedInServiceNow):
        await world.service.notes(TENANT, deleted)
    with pytest.raises(TicketDeletedInServiceNow):
        await world.service.add(CALLER, deleted, NOTE, "k1")


async def test_a_record_gone_in_servicenow_is_409(world: World) -> None:
    world.notes.missing.add(("incident", SYS_ID))
    with pytest.raises(TicketDeletedInServiceNow):
        await world.service.notes(TENANT, world.ticket_id)
    with pytest.raises(TicketDeletedInServiceNow):
        await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert world.claims.rows == {}  # the key is free again


# --- adding ------------------------------------------------------------------------------------------


async def test_a_key_is_required(world: World) -> None:
    with pytest.raises(BadRequest):
        await world.service.add(CALLER, world.ticket_id, NOTE, None)


async def test_a_repeated_key_answers_the_same_note_and_sends_nothing(world: World) -> None:
    first, sent = await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    world.clock.advance(seconds=30)
    again, resent = await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert (sent, resent) == (True, False)
    assert again == first
    assert first.author == CALLER.name
    assert world.notes.attempts == 1


async def test_a_sent_note_is_on_the_timeline_once(world: World) -> None:
    await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert await world.note_events() == [("work_note", CALLER.name)]


async def test_a_note_found_after_an_ambiguous_failure_is_on_the_timeline(world: World) -> None:
    world.notes.outcomes = ["lost"]
    with pytest.raises(UpstreamUnavailable):
        await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert await world.note_events() == []  # not known to be sent yet
    world.clock.advance(seconds=76)
    await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert await world.note_events() == [("work_note", CALLER.name)]


async def test_a_key_with_another_body_is_422(world: World) -> None:
    await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    with pytest.raises(IdempotencyKeyReused):
        await world.service.add(CALLER, world.ticket_id, AddNote(kind="comment", text=NOTE.text), "k1")


async def test_the_same_key_on_another_ticket_is_another_note(world: World) -> None:
    other = world.ticket(sys_id="1" * 32)
    await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    _, sent = await world.service.add(CALLER, other, NOTE, "k1")
    assert sent
    assert world.notes.attempts == 2


async def test_an_ambiguous_failure_then_found_in_the_journal_sends_nothing_more(world: World) -> None:
    world.notes.outcomes = ["lost"]
    with pytest.raises(UpstreamUnavailable) as raised:
        await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert raised.value.ambiguous
    assert raised.value.retry_after == 75
    world.clock.advance(seconds=76)
    note, sent = await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert not sent
    assert note.text == NOTE.text
    assert world.notes.attempts == 1
    assert len(world.notes.entries) == 1
    later, sent_later = await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert (later, sent_later) == (note, False)  # every repeat answers the same note


async def test_an_ambiguous_failure_found_through_the_display_values(world: World) -> None:
    world.notes.outcomes = ["lost"]
    world.notes.hidden = True
    with pytest.raises(UpstreamUnavailable):
        await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    world.clock.advance(seconds=76)
    _, sent = await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert not sent
    assert world.notes.attempts == 1


async def test_an_ambiguous_failure_not_found_is_sent_once_more(world: World) -> None:
    world.notes.outcomes = ["timeout"]
    with pytest.raises(UpstreamUnavailable):
        await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    with pytest.raises(Conflict):  # the PATCH may still commit: the lease waits it out
        await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    world.clock.advance(seconds=76)
    _, sent = await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert sent
    assert world.notes.attempts == 2
    assert len(world.notes.entries) == 1


async def test_an_older_identical_note_is_not_taken_for_this_one(world: World) -> None:
    await world.service.add(CALLER, world.ticket_id, NOTE, "k0")
    world.clock.advance(seconds=600)
    world.notes.outcomes = ["timeout"]
    with pytest.raises(UpstreamUnavailable):
        await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    world.clock.advance(seconds=76)
    _, sent = await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert sent
    assert len(world.notes.entries) == 2


async def test_a_failure_certainly_not_sent_frees_the_key(world: World) -> None:
    world.notes.outcomes = ["unavailable"]
    with pytest.raises(UpstreamUnavailable) as raised:
        await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert not raised.value.ambiguous
    assert world.claims.rows == {}
    _, sent = await world.service.add(CALLER, world.ticket_id, NOTE, "k1")
    assert sent
    assert len(world.notes.entries) == 1


@pytest.mark.parametrize(
    "text", ["", " \n ", "a\x00b", "bell\x07", "x" * 4001, "c1\x85", "pay \u202etxt.exe", "iso\u2066late"]
)
def test_bad_texts_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        AddNote(kind="comment", text=text)


def test_newlines_tabs_and_right_to_left_text_are_kept() -> None:
    assert AddNote(kind="comment", text="a\n\tb").text == "a\n\tb"
    assert AddNote(kind="comment", text="שלום \u200f(RTL mark) مرحبا").text.startswith("שלום")


def test_a_notes_key_space_is_apart_from_every_create_key() -> None:
    from shared.services.idempotency_claims import idempotency_key_hash
    from shared.services.ticket_notes import note_key_hash

    ticket_id = "8" * 13 + "a" * 8
    for spelled in (f"note:{ticket_id}:k1", f"note {ticket_id} k1", f"note{ticket_id}k1"):
        assert note_key_hash(ticket_id, "k1") != idempotency_key_hash(spelled)


async def test_a_claim_outlasts_the_journal_writes_own_retries(world: World) -> None:
    from shared.services.ticket_notes import NOTE_LEASE

    held: list[datetime | None] = []
    send = world.notes.add_journal_entry

    async def watching(*args: Any) -> None:
        held.extend(claim.lease_until for claim in world.claims.rows.values())
        await send(*args)

    world.notes.add_journal_entry = watching  # type: ignore[method-assign,assignment]
    await world.service.add(CALLER, world.ticket_id, NOTE, "k2")
    assert held == [world.clock.now() + NOTE_LEASE]
    assert timedelta(seconds=3 * 30 + 60) <= NOTE_LEASE  # three Retry-After waits, then the 60 s quota


async def test_display_values_we_cannot_read_are_an_error_not_an_empty_list(world: World) -> None:
    async def other_format(*args: Any) -> JournalDisplay:
        return JournalDisplay(work_notes="01/02/2030 09:00:00 - Ada (Work notes)\nDone\n\n")

    world.notes.hidden = True
    world.notes.journal_display_values = other_format  # type: ignore[method-assign,assignment]
    with pytest.raises(UpstreamError, match="default date format"):
        await world.service.notes(TENANT, world.ticket_id)
