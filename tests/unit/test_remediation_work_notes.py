"""The work note the daily Secure Score check adds to a ticket remediated while open: one per
ticket, its state written before the PATCH, looked for in the record's journal before any
re-send, and never re-sent while the journal cannot be read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from shared.errors import UpstreamUnavailable
from shared.records import Connection
from shared.services.remediation_work_notes import JOURNAL, marker
from tests.fakes.remediation import RemediationWorld, action
from tests.fakes.servicenow_tables import FakeServiceNowTables
from tests.fakes.work_notes import FakeWorkNotes, WithJournal


class Notes(FakeWorkNotes):
    """`FakeWorkNotes` that also notes each PATCH's ticket row work-note state as it left, and can
    die right after a note landed (`crash`: raised once, as a worker's death would end the run)."""

    def __init__(self, world: RemediationWorld) -> None:
        super().__init__(clock=world.clock)
        self.world = world
        self.sent: list[tuple[str, str, str | None]] = []  # (sys_id, text, the row's state)
        self.crash: Exception | None = None

    async def add_work_note(self, connection: Connection, table: str, sys_id: str, text: str) -> None:
        row = next(t for t in self.world.tickets.rows.values() if t.sys_id == sys_id)
        self.sent.append((sys_id, text, row.work_note_state))
        await super().add_work_note(connection, table, sys_id, text)
        crash, self.crash = self.crash, None
        if crash is not None:
            raise crash

    def other_note(self, sys_id: str, text: str) -> None:
        """A note someone else added to the record."""
        entry = {"sys_id": "0" * 32, "sys_created_on": "2030-03-01 08:00:00", "sys_created_by": "fulfiller"}
        self.entries.append(
            {**entry, "name": "incident", "element": "work_notes", "element_id": sys_id, "value": text}
        )


class Journal(WithJournal):
    """The instance's tables, `sys_journal_field` answered from the notes; `reads` counts its reads."""

    def __init__(self, notes: Notes) -> None:
        super().__init__(FakeServiceNowTables(notes.clock), notes)
        self.reads = 0

    def query(
        self, connection: Connection, table: str, query: str, fields: list[str], *, page_size: int = 1000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        self.reads += table == JOURNAL
        return super().query(connection, table, query, fields, page_size=page_size)

    async def page(
        self, connection: Connection, table: str, query: str, fields: list[str], *, limit: int = 1000
    ) -> list[dict[str, Any]]:
        self.reads += table == JOURNAL
        return await super().page(connection, table, query, fields, limit=limit)


@pytest.fixture
def world() -> RemediationWorld:
    world = RemediationWorld.create(action("AdminMFAV2"), action("DLPEnabled", 8.0))
    world.connect(remediation_work_notes=True)
    return world


@pytest.fixture
def notes(world: RemediationWorld) -> Notes:
    return Notes(world)


@pytest.fixture
def journal(notes: Notes) -> Journal:
    return Journal(notes)


async def check(world: RemediationWorld, notes: Notes, journal: Journal) -> int:
    outcome = await world.check(notes=notes, journal=journal).check_tenant(world.connection())
    world.clock.advance(days=1)
    return outcome.noted


def _done_while_open(world: RemediationWorld) -> str:
    ticket = world.ticket("AdminMFAV2")
    world.score("AdminMFAV2", 10)
    return ticket


async def test_one_note_per_ticket_its_state_written_before_the_patch(
    world: RemediationWorld, notes: Notes, journal: Journal
) -> None:
    ticket = _done_while_open(world)
    other = world.ticket("DLPEnabled")
    world.score("DLPEnabled", 3)  # not done: no note

    assert await check(world, notes, journal) == 1
    row = world.row(ticket)
    assert [(sys_id, state) for sys_id, _, state in notes.sent] == [(row.sys_id, "sending")]
    text = notes.sent[0][1]
    assert "improvement action AdminMFAV2 (Do AdminMFAV2)" in text
    assert text.endswith(marker("AdminMFAV2", ticket))
    assert (row.work_note_state, row.work_note_at) == ("sent", world.clock.now() - timedelta(days=1))
    assert world.row(other).work_note_state is None

    assert await check(world, notes, journal) == 0
    assert await check(world, notes, journal) == 0
    assert len(notes.sent) == 1
    assert journal.reads == 0


async def test_a_crash_after_the_patch_finds_the_note_and_sends_none(
    world: RemediationWorld, notes: Notes, journal: Journal
) -> None:
    ticket = _done_while_open(world)
    notes.crash = RuntimeError("the worker died")
    await check(world, notes, journal)
    assert world.row(ticket).work_note_state == "sending"

    assert await check(world, notes, journal) == 0
    assert len(notes.sent) == 1
    assert world.row(ticket).work_note_state == "sent"
    assert len(notes.notes[("incident", world.row(ticket).sys_id)]) == 1


async def test_an_ambiguous_answer_is_sent_again_once_when_the_journal_reads_other_entries(
    world: RemediationWorld, notes: Notes, journal: Journal
) -> None:
    ticket = _done_while_open(world)
    notes.other_note(world.row(ticket).sys_id, "Called the user.")
    notes.outcomes.append("timeout")
    await check(world, notes, journal)
    assert world.row(ticket).work_note_state == "sending"

    assert await check(world, notes, journal) == 1
    assert await check(world, notes, journal) == 0
    assert len(notes.sent) == 2
    assert world.row(ticket).work_note_state == "sent"


async def test_an_empty_record_journal_is_trusted_when_the_probe_reads_other_notes(
    world: RemediationWorld, notes: Notes, journal: Journal
) -> None:
    ticket = _done_while_open(world)
    notes.other_note("f" * 32, "A note on another record.")
    notes.outcomes.append("timeout")
    await check(world, notes, journal)

    assert await check(world, notes, journal) == 1
    assert world.row(ticket).work_note_state == "sent"


async def test_a_journal_that_reads_empty_may_be_hidden_so_the_note_is_not_sent_again(
    world: RemediationWorld, notes: Notes, journal: Journal
) -> None:
    ticket = _done_while_open(world)
    notes.hidden = True
    notes.outcomes.append("lost")
    await check(world, notes, journal)

    assert await check(world, notes, journal) == 0
    assert await check(world, notes, journal) == 0
    assert len(notes.sent) == 1
    assert world.row(ticket).work_note_state == "sending"

    notes.hidden = False  # read access granted: the note is found
    await check(world, notes, journal)
    assert len(notes.sent) == 1
    assert world.row(ticket).work_note_state == "sent"


async def test_a_refused_or_unsent_note_is_tried_again_by_the_next_check(
    world: RemediationWorld, notes: Notes, journal: Journal
) -> None:
    ticket = _done_while_open(world)
    second = world.ticket("AdminMFAV2")
    notes.outcomes += ["rejected", "unavailable"]
    await check(world, notes, journal)
    assert [world.row(t).work_note_state for t in (ticket, second)] == [None, None]

    assert await check(world, notes, journal) == 2
    assert len(notes.sent) == 4


async def test_no_note_when_switched_off_closed_or_not_done(
    world: RemediationWorld, notes: Notes, journal: Journal
) -> None:
    world.connect(remediation_work_notes=False)
    ticket = _done_while_open(world)
    await check(world, notes, journal)
    assert notes.sent == []
    assert journal.reads == 0
    assert world.row(ticket).remediated_while_open

    world.connect(remediation_work_notes=True)
    world.move(ticket, "7")  # closed
    world.ticket("DLPEnabled")  # open, not done
    world.score("DLPEnabled", 2)
    await check(world, notes, journal)
    assert notes.sent == []


async def test_a_failing_journal_fails_nothing(
    world: RemediationWorld, notes: Notes, journal: Journal
) -> None:
    ticket = _done_while_open(world)
    notes.outcomes.append("timeout")
    await check(world, notes, journal)

    async def unavailable(*_: Any, **__: Any) -> AsyncIterator[list[dict[str, Any]]]:
        raise UpstreamUnavailable("ServiceNow is down")
        yield []

    journal.query = unavailable  # type: ignore[method-assign]
    outcome = await world.check(notes=notes, journal=journal).check_tenant(world.connection())
    assert outcome.noted == 0
    assert world.row(ticket).work_note_state == "sending"
    assert world.connection().remediation_checked_at == world.clock.now()
