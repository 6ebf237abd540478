"""The ports of a ServiceNow record's journal (`work_notes`, `comments`): appends that are sent
once, and the display values a hidden journal falls back to."""

from __future__ import annotations

from typing import Protocol

from shared.note_models import JournalDisplay, JournalField
from shared.records import Connection


class WorkNoteWriter(Protocol):
    """Adds a work note to a ServiceNow record (a PATCH of its `work_notes` journal field). Not
    idempotent: every accepted PATCH adds an entry, so it is sent once and never retried after it
    may have been processed (`UpstreamUnavailable` with `ambiguous`). Notes already on a record are
    read through `ServiceNowRecords.query` on `sys_journal_field` (`element_id=<sys_id>^element=work_notes`)."""

    async def add_work_note(self, connection: Connection, table: str, sys_id: str, text: str) -> None: ...


class JournalEntries(Protocol):
    """A record's `work_notes`/`comments`: appends sent once (as `WorkNoteWriter`); display values."""

    async def add_journal_entry(
        self, connection: Connection, table: str, sys_id: str, field: JournalField, text: str
    ) -> None: ...

    async def journal_display_values(
        self, connection: Connection, table: str, sys_id: str
    ) -> JournalDisplay | None: ...
