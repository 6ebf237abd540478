"""The daily Secure Score check's columns of the `tickets` table (`RemediationRows`), over the rows of
an `InMemoryTickets`, so the check and the other ticket services see the same tickets; and
`RemediationWorld`, the check wired to fakes of all its ports (`GraphSecureScore` appends what the
write-back sends to the control, as Graph does).

Same contract as `shared.stores.remediation_rows`: rows newest first, only tickets made for an
improvement action, writes only into rows that exist. `requests` notes each request the real
store would make: "read" (the partition query), "merge" (one transaction of up to 100 rows) and
"replace" (a row losing a value: read and replaced). `fail_writes`, when set, is raised by writes.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.journal_ports import WorkNoteWriter
from shared.models import ConnectionStatus, ImprovementAction, TicketType
from shared.ports import ServiceNowRecords
from shared.records import Connection, Ticket, new_ticket_id
from shared.remediation import DEFAULT_GRACE, RemediationChange, RemediationFields, RemediationRow
from shared.secure_score_ports import RemediationRows
from shared.services.remediation_check import RemediationCheck
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.secure_score import InMemorySecureScoreWriter
from tests.fakes.tickets import InMemoryImprovementActions, InMemoryTickets

MAX_BATCH = 100
NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
TENANT = "22222222-2222-2222-2222-222222222222"
INSTANCE = "https://contoso.service-now.com"
_FIELDS = frozenset(f.name for f in fields(RemediationFields))


class InMemoryRemediationRows:
    def __init__(self, tickets: InMemoryTickets) -> None:
        self.tickets = tickets
        self.requests: list[str] = []
        self.fail_writes: Exception | None = None

    async def action_tickets(self, tenant_id: str) -> list[RemediationRow]:
        self.requests.append("read")
        found = [
            t
            for (tenant, _), t in self.tickets.rows.items()
            if tenant == tenant_id and t.improvement_action_id
        ]
        return [_row(ticket) for ticket in sorted(found, key=lambda t: t.ticket_id)]

    async def write(self, tenant_id: str, changes: Sequence[RemediationChange]) -> int:
        if self.fail_writes is not None:
            raise self.fail_writes
        latest = {change.ticket_id: change for change in changes}
        for change in latest.values():
            unknown = set(change.fields) - _FIELDS
            if unknown:
                raise ValueError(f"{sorted(unknown)} are not columns the Secure Score check writes")
        merges = sum(1 for c in latest.values() if None not in c.fields.values())
        self.requests += ["merge"] * -(-merges // MAX_BATCH)
        self.requests += ["replace"] * (len(latest) - merges)
        written = 0
        for change in latest.values():
            current = self.tickets.rows.get((tenant_id, change.ticket_id))
            if current is not None:  # never a row made
                self.tickets.put(current.model_copy(update=dict(change.fields)))
                written += 1
        return written

    def writes(self) -> int:
        """The write requests made so far (transactions and replaced rows)."""
        return sum(1 for request in self.requests if request != "read")


def _row(ticket: Ticket) -> RemediationRow:
    return RemediationRow(
        ticket_id=ticket.ticket_id,
        action_id=ticket.improvement_action_id or "",
        type=ticket.type,
        number=ticket.number,
        sys_id=ticket.sys_id,
        instance_url=ticket.instance_url,
        state=ticket.state,
        state_updated_at=ticket.state_updated_at,
        status=ticket.status,
        deleted=ticket.deleted_in_servicenow_at is not None,
        fields=RemediationFields(**{name: getattr(ticket, name) for name in _FIELDS}),
    )


def _conforms(rows: InMemoryRemediationRows) -> RemediationRows:
    return rows  # mypy checks here that the fake implements the port


# --- A tenant's Secure Score as the check sees it -------------------------------------------------------


class GraphSecureScore(InMemorySecureScoreWriter):
    """The write-back port over `InMemoryImprovementActions`: an update that lands becomes the
    control's newest state and comment, as Graph appends it to `controlStateUpdates`.
    `land_then_fail(error)`: the next update lands, and `error` is raised all the same (an answer
    lost after Graph did the work)."""

    def __init__(self, actions: InMemoryImprovementActions) -> None:
        super().__init__()
        self.actions = actions
        self._lost_answers: list[Exception] = []

    def land_then_fail(self, error: Exception) -> None:
        self._lost_answers.append(error)

    async def update_control(self, tenant_id: str, control_id: str, *, comment: str, state: str) -> None:
        await super().update_control(tenant_id, control_id, comment=comment, state=state)
        if control_id in self.actions.actions:
            action = self.actions.actions[control_id]
            update = {"control_state": state, "control_state_comment": comment}
            self.actions.actions[control_id] = action.model_copy(update=update)
        if self._lost_answers:
            raise self._lost_answers.pop(0)


@dataclass
class RemediationWorld:
    """The check wired to fakes of all its ports: one connected tenant, its tickets, its actions."""

    clock: FakeClock
    tickets: InMemoryTickets
    rows: InMemoryRemediationRows
    actions: InMemoryImprovementActions
    graph: GraphSecureScore
    connections: InMemoryConnectionRepository

    @classmethod
    def create(cls, *actions: ImprovementAction, tickets: InMemoryTickets | None = None) -> RemediationWorld:
        store = tickets or InMemoryTickets()
        known = InMemoryImprovementActions(*actions)
        world = cls(
            clock=FakeClock(NOW),
            tickets=store,
            rows=InMemoryRemediationRows(store),
            actions=known,
            graph=GraphSecureScore(known),
            connections=InMemoryConnectionRepository(),
        )
        world.connect()
        return world

    def check(
        self,
        grace: timedelta = DEFAULT_GRACE,
        *,
        notes: WorkNoteWriter | None = None,
        journal: ServiceNowRecords | None = None,
    ) -> RemediationCheck:
        return RemediationCheck(
            tickets=self.rows,
            actions=self.actions,
            writer=self.graph,
            connections=self.connections,
            clock=self.clock,
            grace=grace,
            notes=notes,
            journal=journal,
        )

    def connect(self, **fields: Any) -> Connection:
        values: dict[str, Any] = {
            "tenant_id": TENANT,
            "instance": "contoso",
            "instance_url": INSTANCE,
            "client_id": "client",
            "status": ConnectionStatus.CONNECTED,
            "updated_at": NOW,
            **fields,
        }
        self.connections.rows[TENANT] = Connection(**values)
        return self.connections.rows[TENANT]

    def connection(self) -> Connection:
        return self.connections.rows[TENANT]

    def ticket(
        self, action_id: str | None, state: str = "1", *, type: TicketType = "incident", **fields: Any
    ) -> str:
        """A ticket made (a moment ago, newer than every earlier one) for `action_id`."""
        self.clock.advance(seconds=1)
        ticket_id = new_ticket_id(self.clock.now())
        number = f"{'INC' if type == 'incident' else 'CHG'}{len(self.tickets.rows) + 10001:07d}"
        values: dict[str, Any] = {
            "tenant_id": TENANT, "ticket_id": ticket_id, "type": type, "sys_id": secrets.token_hex(16),
            "number": number, "instance_url": INSTANCE, "name": "Require MFA", "description": "d",
            "priority": 2, "due_date": date(2030, 6, 1), "recommendation_source": "microsoft",
            "recommendation_category": "Identity", "improvement_action_id": action_id,
            "created_by": "u", "created_by_name": "U", "created_at": self.clock.now(), "state": state,
            "state_updated_at": self.clock.now(), **fields,
        }  # fmt: skip
        self.tickets.put(Ticket(**values))
        return ticket_id

    def move(self, ticket_id: str, state: str) -> None:
        """The ticket's state changes now (as the sync would write it)."""
        row = self.row(ticket_id)
        self.tickets.put(row.model_copy(update={"state": state, "state_updated_at": self.clock.now()}))

    def row(self, ticket_id: str) -> Ticket:
        return self.tickets.rows[(TENANT, ticket_id)]

    def score(self, action_id: str, points: float) -> None:
        self.actions.scores[action_id] = points

    def set_state(self, action_id: str, state: str, comment: str | None = None) -> None:
        """An admin changes the control's state in the portal."""
        action = self.actions.actions[action_id]
        update = {"control_state": state, "control_state_comment": comment}
        self.actions.actions[action_id] = action.model_copy(update=update)


def action(action_id: str, max_score: float = 10.0, **fields: Any) -> ImprovementAction:
    return ImprovementAction(id=action_id, title=f"Do {action_id}", max_score=max_score, **fields)
