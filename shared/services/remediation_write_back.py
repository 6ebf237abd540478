"""One run's write-back of a tenant's tickets to their Secure Score controls: per improvement action,
the comment its newest live ticket makes, PATCHed when Graph does not have it yet (the policy, and
why a comment is PATCHed at most once: `remediation_check.py`)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta

from shared.clock import Clock
from shared.errors import AppError, DependencyNotConfigured, UpstreamUnavailable
from shared.models import ImprovementAction
from shared.records import Connection
from shared.remediation import RemediationChange, RemediationFields, RemediationRow
from shared.secure_score import CONTROL_STATES, writable_control
from shared.secure_score_ports import RemediationRows, SecureScoreWriter
from shared.services.ticket_queries import record_url
from shared.ticket_states import StateLabels, effective_state_names

logger = logging.getLogger(__name__)

# What a ticket of a device control says instead of a write-back (the ticket view shows it).
SCID_REFUSED = "Device controls (scid_) cannot be updated through Microsoft Graph."
# Graph allows an app 150 Secure Score requests a minute per tenant; the write-back keeps to this,
# leaving the rest to the check's reads and the portal's listing of the same tenant.
WRITE_BACK_PER_MINUTE = 100

_WRITE_BACK = ("write_back_comment", "write_back_at", "write_back_error")

Pending = dict[str, RemediationFields]  # ticket id -> the fields the run will leave on its row
ProfileOf = Callable[[str], Awaitable[ImprovementAction]]  # an action's profile, as Graph has it now


def write_back_comment(row: RemediationRow, names: StateLabels) -> str:
    """What the control's comment says of the ticket: its number, state (as the portal names it)
    and link, e.g. `ServiceNow INC0010001 (Resolved): https://…`."""
    state = names.get(row.type, {}).get(row.state, row.state)
    return f"ServiceNow {row.number} ({state}): {record_url(row.instance_url, row.type, row.sys_id)}"


def kept_state(action: ImprovementAction) -> str:
    """The state a PATCH gives the control: the one it has (Graph's spelling), `Default` if none."""
    current = (action.control_state or "").strip()
    return next((state for state in CONTROL_STATES if state.lower() == current.lower()), current or "Default")


class Pacer:
    """At most `limit` requests in any `window`: waits (on the clock) before one that would pass it."""

    def __init__(self, clock: Clock, limit: int, window: timedelta = timedelta(minutes=1)) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._sent: deque[datetime] = deque()

    async def wait(self) -> None:
        now = self._clock.now()
        while self._sent and now - self._sent[0] >= self._window:
            self._sent.popleft()
        if len(self._sent) >= self._limit:
            await self._clock.sleep((self._sent.popleft() + self._window - now).total_seconds())
        self._sent.append(self._clock.now())


class WriteBack:
    """One run for one tenant. `stored` is what the rows hold (kept up to date as rows are written
    here); the run leaves the write-back fields it decides in `pending`. Afterwards: `patched`,
    `found` (Graph already had the comment), `failed`, and `retry_after` when Graph's work for the
    tenant must pause (the run stopped there)."""

    def __init__(
        self,
        connection: Connection,
        *,
        rows: RemediationRows,
        writer: SecureScoreWriter,
        clock: Clock,
        stored: Pending,
        deadline: datetime | None = None,
    ) -> None:
        self._tenant_id = connection.tenant_id
        self._names = effective_state_names(connection.state_names, connection.instance_state_labels)
        self._rows = rows
        self._writer = writer
        self._clock = clock
        self._stored = stored
        self._deadline = deadline
        self._pacer = Pacer(clock, WRITE_BACK_PER_MINUTE)
        self.patched = self.found = self.failed = 0
        self.retry_after: int | None = None

    async def run(
        self, rows: list[RemediationRow], pending: Pending, profile_of: ProfileOf, *, reads_profiles: bool
    ) -> None:
        """Each action of `rows` in turn; `reads_profiles`: `profile_of` asks Graph (paced too)."""
        by_action: dict[str, list[RemediationRow]] = {}
        for row in sorted(rows, key=lambda r: r.ticket_id):  # newest first
            by_action.setdefault(row.action_id, []).append(row)
        for action_id, tickets in by_action.items():
            if self.retry_after is not None or self._past_deadline():
                return
            await self._action(action_id, tickets, pending, profile_of, reads_profiles)

    async def _action(
        self,
        action_id: str,
        tickets: list[RemediationRow],
        pending: Pending,
        profile_of: ProfileOf,
        reads_profiles: bool,
    ) -> None:
        newest = self._speaker(action_id, tickets, pending)
        if newest is None:
            return
        comment = write_back_comment(newest, self._names)
        if pending[newest.ticket_id].write_back_comment == comment:
            return
        try:
            await self._send(action_id, comment, profile_of, reads_profiles)
        except DependencyNotConfigured:
            raise
        except UpstreamUnavailable as error:
            self.retry_after = error.retry_after  # not sent again in this run, whatever happened
            self._fail(newest, pending, error.message)
            return
        except AppError as error:
            self._fail(newest, pending, error.message)
            return
        await self._written(newest, comment, pending)

    def _speaker(
        self, action_id: str, tickets: list[RemediationRow], pending: Pending
    ) -> RemediationRow | None:
        """The ticket that speaks for the action on its control: the newest with a live record.
        None for a device control (its tickets say why). Older tickets lose a stale error."""
        live = [
            t
            for t in tickets
            if t.ticket_id in pending and t.status == "created" and t.sys_id and not t.deleted
        ]
        if not writable_control(action_id):
            for ticket in live:
                pending[ticket.ticket_id] = replace(pending[ticket.ticket_id], write_back_error=SCID_REFUSED)
            return None
        for older in live[1:]:
            if pending[older.ticket_id].write_back_error is not None:
                pending[older.ticket_id] = replace(pending[older.ticket_id], write_back_error=None)
        return live[0] if live else None

    async def _send(self, action_id: str, comment: str, profile_of: ProfileOf, reads_profiles: bool) -> None:
        """PATCH the comment, unless the control's newest entry already carries it (it landed
        before: a PATCH whose answer was lost, or a crash before its row was written)."""
        if reads_profiles:
            await self._pacer.wait()
        profile = await profile_of(action_id)
        if profile.control_state_comment == comment:
            self.found += 1
            return
        await self._pacer.wait()
        await self._writer.update_control(
            self._tenant_id, action_id, comment=comment, state=kept_state(profile)
        )
        self.patched += 1

    async def _written(self, row: RemediationRow, comment: str, pending: Pending) -> None:
        """Record the comment on the row now, before any other PATCH is sent."""
        stored = self._stored[row.ticket_id]
        now = self._clock.now()
        written = replace(stored, write_back_comment=comment, write_back_at=now, write_back_error=None)
        change = {
            name: getattr(written, name)
            for name in _WRITE_BACK
            if getattr(written, name) != getattr(stored, name)
        }
        await self._rows.write(self._tenant_id, [RemediationChange(row.ticket_id, change)])
        self._stored[row.ticket_id] = written
        pending[row.ticket_id] = replace(
            pending[row.ticket_id], write_back_comment=comment, write_back_at=now, write_back_error=None
        )

    def _fail(self, row: RemediationRow, pending: Pending, message: str) -> None:
        self.failed += 1
        pending[row.ticket_id] = replace(pending[row.ticket_id], write_back_error=message)
        logger.warning("Secure Score write-back of %s failed: %s", row.action_id, message)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and self._clock.now() >= self._deadline
