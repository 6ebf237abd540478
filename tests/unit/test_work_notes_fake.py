"""The work-note fake keeps to the port's contract, and its notes read back as the journal does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from shared.models import ConnectionStatus
from shared.records import Connection
from tests.fakes.clock import FakeClock
from tests.fakes.servicenow_tables import FakeServiceNowTables
from tests.fakes.work_notes import FakeWorkNotes, WithJournal

CONNECTION = Connection(
    tenant_id="t1", instance="dev1", instance_url="https://dev1.service-now.com", client_id="c",
    status=ConnectionStatus.CONNECTED, updated_at=datetime(2030, 1, 1, tzinfo=UTC),
)  # fmt: skip
QUERY = "element_id={}^element=work_notes^ORDERBYDESCsys_created_on"


async def test_notes_are_kept_per_record_and_read_back_newest_first() -> None:
    clock = FakeClock()
    notes = FakeWorkNotes(clock=clock)
    await notes.add_work_note(CONNECTION, "incident", "a" * 32, "first")
    clock.advance(seconds=1)
    await notes.add_work_note(CONNECTION, "incident", "a" * 32, "second")
    await notes.add_work_note(CONNECTION, "change_request", "b" * 32, "elsewhere")
    assert notes.notes == {
        ("incident", "a" * 32): ["first", "second"],
        ("change_request", "b" * 32): ["elsewhere"],
    }
    tables = WithJournal(FakeServiceNowTables(clock), notes)
    pages = tables.query(CONNECTION, "sys_journal_field", QUERY.format("a" * 32), ["value", "name"])
    assert [row async for page in pages for row in page] == [
        {"value": "second", "name": "incident"},
        {"value": "first", "name": "incident"},
    ]
    newest = await tables.find_one(CONNECTION, "sys_journal_field", QUERY.format("a" * 32), ["value"])
    assert newest == {"value": "second"}
    notes.hidden = True  # the journal's read ACL: no rows, no error
    assert await tables.page(CONNECTION, "sys_journal_field", QUERY.format("a" * 32), ["value"]) == []


async def test_other_tables_are_the_wrapped_fakes() -> None:
    records = FakeServiceNowTables()
    sys_id = records.add("incident", "ticket-1", "1", "2030-01-01 00:00:00")
    tables = WithJournal(records, FakeWorkNotes())
    found = await tables.find_one(CONNECTION, "incident", "correlation_id=ticket-1^ORDERBYsys_id", ["sys_id"])
    assert found == {"sys_id": sys_id}


@pytest.mark.parametrize(
    ("outcome", "raised", "ambiguous", "kept"),
    [
        ("lost", UpstreamUnavailable, True, ["x"]),
        ("timeout", UpstreamUnavailable, True, []),
        ("unavailable", UpstreamUnavailable, False, []),
        ("rejected", UpstreamRejected, None, []),
        ("not_found", NotFound, None, []),
    ],
)
async def test_scripted_failures(
    outcome: str, raised: type[Exception], ambiguous: bool | None, kept: list[str]
) -> None:
    notes = FakeWorkNotes()
    notes.outcomes.append(outcome)  # type: ignore[arg-type]
    with pytest.raises(raised) as caught:
        await notes.add_work_note(CONNECTION, "incident", "a" * 32, "x")
    if ambiguous is not None:
        assert isinstance(caught.value, UpstreamUnavailable)
        assert caught.value.ambiguous is ambiguous
    assert notes.notes.get(("incident", "a" * 32), []) == kept
    await notes.add_work_note(CONNECTION, "incident", "a" * 32, "then ok")
    assert notes.attempts == 2


async def test_a_missing_record_is_not_found() -> None:
    notes = FakeWorkNotes(missing={("incident", "a" * 32)})
    with pytest.raises(NotFound):
        await notes.add_work_note(CONNECTION, "incident", "a" * 32, "x")
    assert notes.notes == {}
