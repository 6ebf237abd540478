"""The work note the daily Secure Score check adds to a ticket's ServiceNow record when Secure
Score shows its improvement action done while the ticket is still open (`remediated_while_open`),
for tenants that turned it on (`Connection.remediation_work_notes`). One note per ticket, ever.

**Why a note is never sent twice.** A PATCH of `work_notes` appends a journal entry and has no
idempotency key, so sending again when unsure would add a second note. Hence:

1. The row records `work_note_state="sending"` (a merge) before the PATCH leaves, and `sent`
   after ServiceNow confirmed it. A row that could not be marked (gone) is not sent.
2. A PATCH ServiceNow certainly did not carry out (refused, or never sent) takes `sending` away
   again: the next check tries again. One whose outcome is unknown (`UpstreamUnavailable` with
   `ambiguous`) leaves `sending`, and no further note is sent in this run.
3. A row found in `sending` (an unknown outcome, or a crash between the mark and `sent`) is not
   sent again blindly: the record's journal (`sys_journal_field`, its `work_notes` entries) is
   read first. Each note carries a marker line, `[secure-score:<action id>:<ticket id>]`: found,
   the row becomes `sent` and nothing is sent.
4. Not found does not prove the note is missing: a user without read access to
   `sys_journal_field` gets an empty answer, not an error (ACLs filter rows silently). So the
   note is sent again only when the journal is known to be readable: the record's read returned
   other entries, or one probe of the table (any `work_notes` entry of the instance, one request
   a run) returned one. Otherwise the row stays `sending` and a warning says why; granting read
   on `sys_journal_field` lets the next check settle it.
5. Runs of one tenant never overlap: the check runs inside its sync run, under the sync's lease.

A ticket no longer open, no longer remediated or gone from ServiceNow gets no note (the check's
flag is false for it). Nothing here fails the check: every failure is logged and left to the next
check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import AppError, UpstreamUnavailable
from shared.journal_ports import WorkNoteWriter
from shared.ports import ServiceNowRecords
from shared.records import CORRELATION_DISPLAY, Connection
from shared.remediation import RemediationChange, RemediationFields, RemediationRow, WorkNoteState
from shared.secure_score_ports import RemediationRows

logger = logging.getLogger(__name__)

JOURNAL = "sys_journal_field"


def marker(action_id: str, ticket_id: str) -> str:
    """The line that finds a ticket's note again in the record's journal."""
    return f"[secure-score:{action_id}:{ticket_id}]"


def note_text(action_id: str, title: str, ticket_id: str, checked: datetime) -> str:
    return (
        f"Microsoft Secure Score now awards all points for improvement action {action_id} ({title}): "
        f"the remediation this ticket asks for looks done. Checked {checked.date().isoformat()}. "
        f"— {CORRELATION_DISPLAY}\n{marker(action_id, ticket_id)}"
    )


@dataclass
class WorkNoteOutcome:
    sent: int = 0  # notes ServiceNow confirmed
    found: int = 0  # notes an earlier attempt left on the record: recorded, not sent
    held: int = 0  # rows left `sending`: the journal could not tell whether the note is there


class _Stop(Exception):
    """The instance cannot take more notes in this run."""


class _NotSent(Exception):
    """ServiceNow refused this note; the others may still go."""


class WorkNotes:
    def __init__(
        self,
        *,
        rows: RemediationRows,
        writer: WorkNoteWriter,
        journal: ServiceNowRecords,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._rows = rows
        self._writer = writer
        self._journal = journal
        self._clock = clock

    async def run(
        self,
        connection: Connection,
        rows: Sequence[RemediationRow],
        results: Mapping[str, RemediationFields],
        titles: Mapping[str, str],
        deadline: datetime | None = None,
    ) -> WorkNoteOutcome:
        """Note the tickets whose check (`results`, by ticket id) found them remediated while open,
        when the tenant turned notes on; `titles` by action id. Never raises."""
        outcome = WorkNoteOutcome()
        if not connection.remediation_work_notes:
            return outcome
        due = [row for row in rows if _due(row, results.get(row.ticket_id))]
        readable: list[bool] = []  # the probe's answer, once asked
        try:
            for row in due:
                if deadline is not None and self._clock.now() >= deadline:
                    break
                try:
                    await self._note(
                        connection, row, titles.get(row.action_id) or row.action_id, outcome, readable
                    )
                except _NotSent:
                    continue
        except _Stop:
            pass
        except AppError as error:  # ServiceNow or storage unavailable: the next check goes on
            logger.warning(
                "ServiceNow work notes of tenant %s stopped: %s", connection.tenant_id, error.message
            )
        except Exception:  # a defect here must not fail the check
            logger.exception("ServiceNow work notes of tenant %s stopped", connection.tenant_id)
        return outcome

    async def _note(
        self,
        connection: Connection,
        row: RemediationRow,
        title: str,
        outcome: WorkNoteOutcome,
        readable: list[bool],
    ) -> None:
        if row.fields.work_note_state == "sending":
            entries = await self._entries(connection, row)
            if any(marker(row.action_id, row.ticket_id) in entry for entry in entries):
                await self._mark(connection, row, "sent")
                outcome.found += 1
                return
            if not entries and not await self._probe(connection, readable):
                outcome.held += 1
                logger.warning(
                    "Work note of ticket %s may have been sent: its journal reads empty and "
                    "sys_journal_field looks unreadable, so it is not sent again",
                    row.ticket_id,
                )
                return
        if await self._mark(connection, row, "sending") == 0:
            return  # the row is gone
        await self._send(connection, row, title)
        await self._mark(connection, row, "sent")
        outcome.sent += 1

    async def _send(self, connection: Connection, row: RemediationRow, title: str) -> None:
        text = note_text(row.action_id, title, row.ticket_id, self._clock.now())
        try:
            await self._writer.add_work_note(connection, row.type, row.sys_id, text)
        except UpstreamUnavailable as error:
            if not error.ambiguous:
                await self._mark(connection, row, None)
            logger.warning("Work note of ticket %s not confirmed: %s", row.ticket_id, error.message)
            raise _Stop from error
        except AppError as error:  # refused: nothing was added
            await self._mark(connection, row, None)
            logger.warning("Work note of ticket %s refused: %s", row.ticket_id, error.message)
            raise _NotSent from error

    async def _entries(self, connection: Connection, row: RemediationRow) -> list[str]:
        """The values of the record's work notes, oldest first."""
        query = f"element_id={row.sys_id}^element=work_notes^ORDERBYsys_created_on"
        values: list[str] = []
        async for page in self._journal.query(connection, JOURNAL, query, ["value", "sys_created_on"]):
            values += [str(entry.get("value") or "") for entry in page]
        return values

    async def _probe(self, connection: Connection, readable: list[bool]) -> bool:
        """Whether this user can read any `work_notes` entry of the instance (asked once a run)."""
        if not readable:
            query = "element=work_notes^ORDERBYDESCsys_created_on"
            readable.append(
                bool(await self._journal.page(connection, JOURNAL, query, ["sys_created_on"], limit=1))
            )
        return readable[0]

    async def _mark(self, connection: Connection, row: RemediationRow, state: WorkNoteState | None) -> int:
        at = self._clock.now() if state is not None else None
        change = RemediationChange(row.ticket_id, {"work_note_state": state, "work_note_at": at})
        return await self._rows.write(connection.tenant_id, [change])


def _due(row: RemediationRow, result: RemediationFields | None) -> bool:
    return (
        result is not None
        and result.remediated_while_open
        and row.fields.work_note_state != "sent"
        and bool(row.sys_id)
    )
