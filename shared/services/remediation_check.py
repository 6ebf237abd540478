"""The daily Secure Score check of a tenant's tickets made for improvement actions, and the
write-back of those tickets to their controls (rules: `shared.remediation`).

**The check** runs once a day per tenant, with the sync's daily reconciliation (`sync_run.py`):

- Nothing while Graph asked us to leave the tenant alone (`Connection.graph_not_before`).
- One partition query reads the tenant's tickets made for an improvement action (few columns).
  None: no Graph request at all.
- One `GET /security/secureScores?$top=1` (the points per control) and the control profiles
  (`maxScore`, `deprecated`, the newest `controlStateUpdates` entry), every page.
- Per ticket with a ServiceNow record: the status, the first completion carried over, and the
  flags against the ticket's state (closed per `ticket_states.closed_state` with the instance's
  labels; `closed_at` is the stored one, or the state change's time when first seen closed, and
  goes away when the ticket is open again).
- Only rows whose result changed are written (merges, 100 a transaction, never making a row).
  A row's `RemediationCheckedAt` is when its current result was found; the connection's
  `RemediationCheckedAt` (written last) is when the tenant was last checked: every row's result
  holds as of then.
- Then a work note on each ticket remediated while open, once, when the tenant turned it on
  (`Connection.remediation_work_notes`; `remediation_work_notes`).

**Write-back** (only when the tenant turned it on: `Connection.secure_score_write_back`): per
improvement action, the newest ticket with a live record decides the comment, e.g.
`ServiceNow INC0010001 (Resolved): <link>`, recorded on that row (`write_back_comment`). The
control keeps its current state (`Default` when it has none): we never set one ourselves. Device
controls (`scid_`) cannot be updated through Graph: their tickets say so (`SCID_REFUSED`) and
nothing is sent. A failed write-back is recorded on the row (`write_back_error`) and fails
nothing else; the next check tries again. The daily check covers tickets made and states changed
since the last one; the sync also calls `write_back_changed` for the rows its run changed, so a
state change reaches Secure Score within a sync period (it reads the tenant's action tickets, so
it costs storage only for tenants that turned write-back on).

**Why a comment is PATCHed at most once.** Graph appends every accepted PATCH to the control's
history and has no idempotency key, so sending again when unsure would add entries. Hence:

1. A PATCH is sent only when the comment differs from the deciding row's `write_back_comment`,
   and from the comment of the control's newest `controlStateUpdates` entry read in this run
   (the check's profile listing; `write_back_changed` reads that one profile first). When Graph
   already has our comment as the newest entry, it is recorded as written, and nothing is sent.
2. After a PATCH Graph confirmed, the row is written at once, before the next PATCH, not with the
   check's batch.
3. A PATCH whose outcome is unknown (`UpstreamUnavailable` with `ambiguous`: a timeout after
   sending, a dropped connection, a 5xx) is recorded as the row's error and is not sent again in
   this run: the tenant's Graph work stops for the run. The next run reads the profile (rule 1):
   our comment as the newest entry means it landed (recorded, not sent); otherwise it did not.
4. A crash between a confirmed PATCH and the row's write is the same case: the next run finds our
   comment on Graph. (Only when someone else changed the control in between is ours sent again.)
5. Runs of one tenant never overlap: they happen inside its sync run, under the sync's lease.

**At creation** a ticket made for an improvement action is written back in its request
(`ticket_created`, at most `CREATED_WRITE_BACK_S`), when the tenant turned write-back on: that
runs outside the sync's lease, so if the tenant's daily check reads the new row in the same
moment, both may send the same comment (one extra history entry on the control; never a wrong
one). Anything it could not do, the daily check does.

**The Graph budget**, per tenant and day: the check's one `secureScores` request and the profile
pages, plus one PATCH per changed comment (and, in `write_back_changed`, one profile read per
changed comment). A 429 (or any unavailability) stops the run's Graph work and pauses the
tenant's until `now + Retry-After` (`graph_not_before`); the ServiceNow sync carries on. PATCHes
are paced to `WRITE_BACK_PER_MINUTE`, under Graph's 150 Secure Score requests a minute per tenant,
leaving room for the reads (ours and the portal's).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import AppError, NotFound, UpstreamUnavailable
from shared.journal_ports import WorkNoteWriter
from shared.models import ImprovementAction
from shared.ports import ConnectionStore, ImprovementActions, ServiceNowRecords
from shared.records import Connection, Ticket
from shared.remediation import (
    DEFAULT_GRACE,
    RemediationChange,
    RemediationFields,
    RemediationRow,
    next_remediation,
    remediation_flags,
    remediation_status,
)
from shared.rule_ports import SecureScoreReadHook
from shared.secure_score_ports import RemediationRows, SecureScoreWriter
from shared.services.remediation_work_notes import WorkNotes
from shared.services.remediation_write_back import SCID_REFUSED, Pending, ProfileOf, WriteBack
from shared.ticket_states import StateLabels, closed_state

logger = logging.getLogger(__name__)

# The fields of a check's result: a change in any of them is written with the check's time.
_RESULT = frozenset(
    f.name for f in fields(RemediationFields) if not f.name.startswith(("write_back", "work_note"))
)


@dataclass
class RemediationOutcome:
    """What one run did for a tenant (for the log line and tests)."""

    tenant_id: str
    skipped: str | None = None
    statuses: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    written: int = 0  # ticket rows written
    patched: int = 0  # PATCHes Graph confirmed
    found: int = 0  # comments Graph already had as the newest entry: recorded, not sent
    failed: int = 0  # write-backs that failed (recorded on their row)
    noted: int = 0  # work notes added to ServiceNow records
    paused_until: datetime | None = None

    def summary(self) -> str:
        statuses = ", ".join(f"{name} {n}" for name, n in sorted(self.statuses.items())) or "none"
        flags = ", ".join(f"{name} {self.flags[name]}" for name in _FLAGS)
        return (
            f"{sum(self.statuses.values())} ticket(s) ({statuses}); flags: {flags}; "
            f"{self.written} row(s) written; write-back: {self.patched} sent, {self.found} already "
            f"there, {self.failed} failed; {self.noted} work note(s) added"
            + (f"; Graph paused until {self.paused_until.isoformat()}" if self.paused_until else "")
        )


_FLAGS = ("closed_without_remediation", "remediated_while_open", "regressed")
# A new ticket's write-back holds its create request this long at most.
CREATED_WRITE_BACK_S = 5.0


class RemediationCheck:
    def __init__(
        self,
        *,
        tickets: RemediationRows,
        actions: ImprovementActions,
        writer: SecureScoreWriter,
        connections: ConnectionStore,
        clock: Clock = SYSTEM_CLOCK,
        grace: timedelta = DEFAULT_GRACE,
        notes: WorkNoteWriter | None = None,
        journal: ServiceNowRecords | None = None,
        after_read: SecureScoreReadHook | None = None,
    ) -> None:
        """`notes` and `journal` (both, or no work notes): see `remediation_work_notes`;
        `after_read`: given the check's read once it is done (the rules), may ask for a read."""
        self._notes = (
            WorkNotes(rows=tickets, writer=notes, journal=journal, clock=clock)
            if notes is not None and journal is not None
            else None
        )
        self._rows = tickets
        self._actions = actions
        self._writer = writer
        self._connections = connections
        self._clock = clock
        self._grace = grace
        self._hook = after_read

    async def check_tenant(
        self, connection: Connection, *, deadline: datetime | None = None
    ) -> RemediationOutcome:
        """Check the tenant's tickets against Secure Score, and write them back if it is turned on
        (no PATCH is started after `deadline`). Graph unavailable or throttling: the tenant's Graph
        work pauses, nothing is written. Raises DependencyNotConfigured without Graph, and what
        storage raises."""
        tenant_id, now = connection.tenant_id, self._clock.now()
        outcome = RemediationOutcome(tenant_id)
        if _paused(connection, now, outcome):
            return outcome
        rows = await self._rows.action_tickets(tenant_id)
        if not rows and not (self._hook is not None and await self._hook.wants_read(tenant_id)):
            outcome.skipped = "no tickets made for improvement actions"
            return outcome
        try:
            scores, profiles = await asyncio.gather(
                self._actions.control_scores(tenant_id), self._actions.list_improvement_actions(tenant_id)
            )
        except UpstreamUnavailable as error:
            outcome.skipped, outcome.paused_until = error.message, now + timedelta(seconds=error.retry_after)
            await self._record(tenant_id, now, outcome, checked=False)
            logger.warning("Secure Score check stopped: %s", outcome.summary())
            return outcome
        by_id = {action.id: action for action in profiles}
        labels = connection.instance_state_labels
        pending: Pending = {
            row.ticket_id: _unflagged_if_deleted(
                row, self._checked(row, by_id.get(row.action_id), scores, now, labels)
            )
            for row in rows
            if row.status == "created"
        }
        for result in pending.values():
            _count(result, outcome)
        stored: Pending = {row.ticket_id: row.fields for row in rows}
        if connection.secure_score_write_back:
            await self._write_back(connection, rows, (pending, stored), _known(by_id), outcome, deadline)
        outcome.written += await self._rows.write(tenant_id, _changes(stored, pending))
        if self._notes is not None:
            titles = {action.id: action.title for action in profiles}
            outcome.noted = (await self._notes.run(connection, rows, pending, titles, deadline)).sent
        await self._record(tenant_id, now, outcome, checked=True)
        logger.info("Secure Score check: %s", outcome.summary())
        if self._hook is not None:
            await self._hook.after_read(connection, scores, profiles)
        return outcome

    async def ticket_created(self, connection: Connection, ticket: Ticket) -> None:
        """A request made `ticket`: write it back at once when the tenant turned write-back on and
        it names an improvement action (`CREATED_WRITE_BACK_S` at most; never raises: the daily
        check writes back what this did not)."""
        if not connection.secure_score_write_back or ticket.improvement_action_id is None:
            return
        deadline = self._clock.now() + timedelta(seconds=CREATED_WRITE_BACK_S)
        try:
            async with asyncio.timeout(CREATED_WRITE_BACK_S):
                await self.write_back_changed(connection, [ticket.ticket_id], deadline=deadline)
        except (AppError, TimeoutError) as error:
            reason = error.message if isinstance(error, AppError) else "it took too long"
            logger.warning("Secure Score write-back of new ticket %s: %s", ticket.ticket_id, reason)
        except Exception:  # a defect here must not fail a create whose ticket is made
            logger.exception("Secure Score write-back of new ticket %s failed", ticket.ticket_id)

    async def write_back_changed(
        self, connection: Connection, ticket_ids: Sequence[str], *, deadline: datetime | None = None
    ) -> RemediationOutcome:
        """Write back the improvement actions of these tickets (whose state a sync run changed)
        and of those whose last write-back failed, when the tenant turned write-back on; nothing
        is read or written otherwise."""
        tenant_id, now = connection.tenant_id, self._clock.now()
        outcome = RemediationOutcome(tenant_id)
        if not connection.secure_score_write_back:
            outcome.skipped = "nothing to write back"
            return outcome
        if _paused(connection, now, outcome):
            return outcome
        changed = set(ticket_ids)
        rows = await self._rows.action_tickets(tenant_id)
        touched = {row.action_id for row in rows if row.ticket_id in changed or _to_retry(row)}
        rows = [row for row in rows if row.action_id in touched]
        if not rows:
            return outcome
        pending: Pending = {row.ticket_id: row.fields for row in rows}
        stored = dict(pending)

        async def profile_of(action_id: str) -> ImprovementAction:
            return await self._actions.get_improvement_action(tenant_id, action_id)

        await self._write_back(connection, rows, (pending, stored), profile_of, outcome, deadline, reads=True)
        outcome.written += await self._rows.write(tenant_id, _changes(stored, pending))
        if outcome.paused_until is not None:
            await self._record(tenant_id, now, outcome, checked=False)
        logger.info(
            "Secure Score write-back of changed tickets: %d sent, %d already there, %d failed",
            outcome.patched, outcome.found, outcome.failed,
        )  # fmt: skip
        return outcome

    def _checked(
        self,
        row: RemediationRow,
        action: ImprovementAction | None,
        scores: dict[str, float],
        now: datetime,
        labels: StateLabels,
    ) -> RemediationFields:
        """The row's fields after this check (its write-back fields as they are)."""
        score = scores.get(row.action_id)
        max_score = action.max_score if action is not None else None
        state = action.control_state if action is not None else None
        status = remediation_status(score, max_score, state, action is not None and action.deprecated)
        previous = row.fields.last_check()
        current = next_remediation(previous, status, score, max_score, now)
        closed = closed_state(row.type, row.state, labels)
        closed_at = (row.fields.closed_at or row.state_updated_at) if closed else None
        flags = remediation_flags(
            previous, current, ticket_closed=closed, closed_at=closed_at, grace=self._grace
        )
        return replace(
            row.fields,
            remediation_status=current.status,
            remediation_score=current.score,
            remediation_max_score=current.max_score,
            remediation_checked_at=now,
            remediation_completed_at=current.completed_at,
            closed_at=closed_at,
            closed_without_remediation=flags.closed_without_remediation,
            remediated_while_open=flags.remediated_while_open,
            regressed=flags.regressed,
        )

    async def _write_back(
        self,
        connection: Connection,
        rows: list[RemediationRow],
        held: tuple[Pending, Pending],
        profile_of: ProfileOf,
        outcome: RemediationOutcome,
        deadline: datetime | None,
        *,
        reads: bool = False,
    ) -> None:
        """`held`: what the run will leave on each row, and what each row holds now (both kept
        up to date by the write-back); `reads`: `profile_of` asks Graph."""
        pending, stored = held
        write_back = WriteBack(
            connection,
            rows=self._rows,
            writer=self._writer,
            clock=self._clock,
            stored=stored,
            deadline=deadline,
        )
        await write_back.run(rows, pending, profile_of, reads_profiles=reads)
        outcome.patched, outcome.found, outcome.failed = (
            write_back.patched,
            write_back.found,
            write_back.failed,
        )
        if write_back.retry_after is not None:
            outcome.paused_until = self._clock.now() + timedelta(seconds=write_back.retry_after)

    async def _record(
        self, tenant_id: str, now: datetime, outcome: RemediationOutcome, *, checked: bool
    ) -> None:
        """The check's time and/or Graph's pause on the connection row (ETag-conditional)."""

        def change(current: Connection) -> dict[str, Any]:
            update: dict[str, Any] = {}
            if checked:
                update["remediation_checked_at"] = now
            paused = outcome.paused_until
            if paused is not None and (current.graph_not_before is None or current.graph_not_before < paused):
                update["graph_not_before"] = paused
            if update:
                update["updated_at"] = now
            return update

        await self._connections.update(tenant_id, change)


def _to_retry(row: RemediationRow) -> bool:
    """A write-back that failed (Graph unavailable, refused) is tried again by the next run that
    writes back; a device control's refusal is final."""
    error = row.fields.write_back_error
    return error is not None and error != SCID_REFUSED


def _unflagged_if_deleted(row: RemediationRow, result: RemediationFields) -> RemediationFields:
    """A ticket whose record is gone from ServiceNow keeps its check but no flag: nobody can act on
    it there, and the cards count what needs acting on."""
    if not row.deleted:
        return result
    return replace(result, closed_without_remediation=False, remediated_while_open=False, regressed=False)


def _paused(connection: Connection, now: datetime, outcome: RemediationOutcome) -> bool:
    if connection.graph_not_before is None or connection.graph_not_before <= now:
        return False
    outcome.skipped = f"Microsoft Graph asked us to wait until {connection.graph_not_before.isoformat()}"
    logger.info("Secure Score check skipped: %s", outcome.skipped)
    return True


def _known(by_id: dict[str, ImprovementAction]) -> ProfileOf:
    async def profile_of(action_id: str) -> ImprovementAction:
        if action_id not in by_id:
            raise NotFound(f"Improvement action {action_id} was not found in Microsoft Secure Score.")
        return by_id[action_id]

    return profile_of


def _count(result: RemediationFields, outcome: RemediationOutcome) -> None:
    if result.remediation_status is not None:
        outcome.statuses[result.remediation_status.value] += 1
    for name in _FLAGS:
        outcome.flags[name] += int(getattr(result, name))


def _changes(stored: Pending, pending: Pending) -> list[RemediationChange]:
    """The fields of each row that differ from what it holds; the check's time goes with a result
    that changed, not alone (a row whose result holds is not written)."""
    changes: list[RemediationChange] = []
    for ticket_id, wanted in pending.items():
        held = stored[ticket_id]
        diff = {
            f.name: getattr(wanted, f.name)
            for f in fields(RemediationFields)
            if f.name != "remediation_checked_at" and getattr(wanted, f.name) != getattr(held, f.name)
        }
        if diff.keys() & _RESULT:
            diff["remediation_checked_at"] = wanted.remediation_checked_at
        if diff:
            changes.append(RemediationChange(ticket_id, diff))
    return changes
