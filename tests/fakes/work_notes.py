"""Work notes and comments for unit tests: a scriptable `WorkNoteWriter` and `JournalEntries`, and
its notes read back as ServiceNow's `sys_journal_field` table or as the record's display values.

`FakeWorkNotes` keeps each note it accepted per (table, sys_id), in order, and answers queries on
`sys_journal_field` the way the instance does (the simulator's query evaluator, as
`servicenow_tables.py` uses it; a field a journal entry does not have fails the test).
`outcomes` scripts the next calls (then "ok"):

- "lost": the note is added, then the answer is lost (ambiguous UpstreamUnavailable);
- "timeout": ambiguous UpstreamUnavailable, and no note is added;
- "unavailable": no note, and certainly not (a connect error or a 429: not ambiguous);
- "rejected": ServiceNow refuses the note (UpstreamRejected);
- "not_found": there is no such record (NotFound); so is every call for a record in `missing`.

`hidden = True` is the journal's own read ACL: queries answer no rows, while notes are still added.
`WithJournal` puts the notes behind another `ServiceNowRecords` fake: `sys_journal_field` is
answered from the notes, every other table by that fake. Entries written in the same second keep
the order they were added in; advance the clock between notes to order them by `sys_created_on`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from localdev.servicenow.query import parse_encoded_query
from shared.clock import Clock
from shared.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from shared.journal_ports import JournalEntries, WorkNoteWriter
from shared.note_models import JournalDisplay, JournalField
from shared.ports import ServiceNowRecords
from shared.records import Connection
from shared.services.sync_marks import format_glide, parse_glide
from tests.fakes.clock import FakeClock

JOURNAL_TABLE = "sys_journal_field"
JOURNAL_FIELDS = frozenset(
    {"sys_id", "sys_created_on", "sys_created_by", "name", "element", "element_id", "value"}
)
INTEGRATION_USER = "m365.integration"
FULL_NAMES = {INTEGRATION_USER: "M365 Integration"}  # as display values name the authors

WorkNoteOutcome = Literal["ok", "lost", "timeout", "unavailable", "rejected", "not_found"]


def _known(name: str) -> bool:
    assert name in JOURNAL_FIELDS, f"a journal query names {name!r}, which sys_journal_field has not"
    return True


@dataclass
class FakeWorkNotes:
    clock: Clock = field(default_factory=FakeClock)
    outcomes: list[WorkNoteOutcome] = field(default_factory=list)
    missing: set[tuple[str, str]] = field(default_factory=set)  # (table, sys_id) with no record
    hidden: bool = False
    display_offset: timedelta = timedelta(0)  # the integration user's time zone, for display values
    attempts: int = 0  # PATCHes sent, whatever came of them
    entries: list[dict[str, str]] = field(default_factory=list)  # sys_journal_field rows, oldest first

    @property
    def notes(self) -> dict[tuple[str, str], list[str]]:
        """The texts added to each (table, sys_id), oldest first."""
        found: dict[tuple[str, str], list[str]] = {}
        for entry in self.entries:
            found.setdefault((entry["name"], entry["element_id"]), []).append(entry["value"])
        return found

    async def add_work_note(self, connection: Connection, table: str, sys_id: str, text: str) -> None:
        await self.add_journal_entry(connection, table, sys_id, "work_notes", text)

    async def add_journal_entry(
        self, connection: Connection, table: str, sys_id: str, field: JournalField, text: str
    ) -> None:
        self.attempts += 1
        what = "a work note" if field == "work_notes" else "a comment"
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "not_found" or (table, sys_id) in self.missing:
            raise NotFound(f"ServiceNow has no {table} record {sys_id} to add {what} to.")
        if outcome == "rejected":
            raise UpstreamRejected(f"ServiceNow refused to add {what} to a {table} record (HTTP 403).")
        if outcome == "unavailable":
            raise UpstreamUnavailable(f"ServiceNow did not answer ({what}).", retry_after=1)
        if outcome == "timeout":
            raise UpstreamUnavailable(f"ServiceNow did not answer ({what}).", retry_after=1, ambiguous=True)
        self.entries.append(
            {
                "sys_id": secrets.token_hex(16),
                "sys_created_on": format_glide(self.clock.now()),
                "sys_created_by": INTEGRATION_USER,
                "name": table,
                "element": field,
                "element_id": sys_id,
                "value": text,
            }
        )
        if outcome == "lost":
            raise UpstreamUnavailable(f"ServiceNow did not answer ({what}).", retry_after=1, ambiguous=True)

    async def journal_display_values(
        self, connection: Connection, table: str, sys_id: str
    ) -> JournalDisplay | None:
        """As the instance shows the fields to a user `display_offset` ahead of UTC; None: no record."""
        if (table, sys_id) in self.missing:
            return None
        now = self.clock.now()
        return JournalDisplay(
            work_notes=self._displayed(table, sys_id, "work_notes"),
            comments=self._displayed(table, sys_id, "comments"),
            updated_display=format_glide(now + self.display_offset),
            updated_value=format_glide(now),
        )

    def _displayed(self, table: str, sys_id: str, element: str) -> str:
        label = "Work notes" if element == "work_notes" else "Additional comments"
        shown = []
        for entry in reversed(self.entries):
            if (entry["name"], entry["element_id"], entry["element"]) != (table, sys_id, element):
                continue
            created = parse_glide(entry["sys_created_on"])
            assert created is not None, entry
            stamp = format_glide(created + self.display_offset)
            name = FULL_NAMES.get(entry["sys_created_by"], entry["sys_created_by"])
            shown.append(f"{stamp} - {name} ({label})\n{entry['value']}\n\n")
        return "".join(shown)

    def journal(self, query: str, fields: list[str]) -> list[dict[str, Any]]:
        """The `sys_journal_field` rows `query` selects, in its order, with `fields` only."""
        if self.hidden:
            return []
        compiled = parse_encoded_query(query, _known, self.clock.now())
        rows = compiled.sort([row for row in self.entries if compiled.matches(row)])
        return [{name: row.get(name, "") for name in fields} for row in rows]

    async def query(
        self, connection: Connection, table: str, query: str, fields: list[str], *, page_size: int = 1000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        assert table == JOURNAL_TABLE, table
        rows = self.journal(query, fields)
        for start in range(0, len(rows), page_size):
            yield rows[start : start + page_size]


class WithJournal:
    """`records` (any `ServiceNowRecords` fake) with `sys_journal_field` answered from `notes`."""

    def __init__(self, records: ServiceNowRecords, notes: FakeWorkNotes) -> None:
        self.records = records
        self.notes = notes

    async def create(
        self,
        connection: Connection,
        table: str,
        fields: dict[str, str],
        *,
        before_post: Callable[[], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        return await self.records.create(connection, table, fields, before_post=before_post)

    async def find_one(
        self, connection: Connection, table: str, query: str, fields: list[str]
    ) -> dict[str, Any] | None:
        if table != JOURNAL_TABLE:
            return await self.records.find_one(connection, table, query, fields)
        rows = self.notes.journal(query, fields)
        return rows[0] if rows else None

    def query(
        self, connection: Connection, table: str, query: str, fields: list[str], *, page_size: int = 1000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        source = self.notes if table == JOURNAL_TABLE else self.records
        return source.query(connection, table, query, fields, page_size=page_size)

    async def page(
        self, connection: Connection, table: str, query: str, fields: list[str], *, limit: int = 1000
    ) -> list[dict[str, Any]]:
        if table != JOURNAL_TABLE:
            return await self.records.page(connection, table, query, fields, limit=limit)
        return self.notes.journal(query, fields)[:limit]


def _conforms(notes: FakeWorkNotes, with_journal: WithJournal) -> None:
    # mypy checks here that the fakes implement the ports.
    _writer: WorkNoteWriter = notes
    _journal: JournalEntries = notes
    _records: ServiceNowRecords = with_journal
