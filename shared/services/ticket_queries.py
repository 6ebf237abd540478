"""The read side: a tenant's tickets a page at a time, one ticket, the summary cards, and how a
ticket is shown (state names from the tenant's connection, a link into its instance, what the
daily Secure Score check found about its improvement action)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from shared.errors import NotFound
from shared.models import (
    StateCount,
    TicketListQuery,
    TicketPage,
    TicketSummary,
    TicketTypeSummary,
    TicketView,
)
from shared.ports import ConnectionStore, TicketStore
from shared.records import TICKET_ID, Connection, Ticket
from shared.remediation_models import (
    FlagCounts,
    RemediationFlags,
    RemediationView,
    TicketCounts,
    WriteBack,
)
from shared.ticket_states import CHANGE_REQUEST, INCIDENT, StateLabels, effective_state_names


class TicketQueries:
    def __init__(self, *, connections: ConnectionStore, tickets: TicketStore) -> None:
        self._connections = connections
        self._tickets = tickets

    async def page(self, tenant_id: str, query: TicketListQuery) -> TicketPage:
        """One page of the tenant's tickets, newest first, and the next page's token."""
        items, token = await self._tickets.page(
            tenant_id,
            type=query.type,
            state=query.state,
            flag=query.flag,
            top=query.top,
            continuation_token=query.continuation_token,
        )
        connection = await self._connections.get(tenant_id)
        return TicketPage(items=[ticket_view(t, connection) for t in items], continuation_token=token)

    async def ticket(self, tenant_id: str, ticket_id: str) -> TicketView:
        """One ticket of the tenant. Raises NotFound for unknown ids and other tenants' tickets."""
        ticket = await self._tickets.get(tenant_id, ticket_id) if TICKET_ID.match(ticket_id) else None
        if ticket is None:
            raise NotFound("No such ticket.")
        return ticket_view(ticket, await self._connections.get(tenant_id))

    async def summary(self, tenant_id: str) -> TicketSummary:
        """The two cards: per type, the total and a count per state (every known state, then others),
        and how many carry each remediation flag."""
        counts = await self._tickets.count_by_state(tenant_id)
        names = _state_names(await self._connections.get(tenant_id))
        return TicketSummary(
            incident=_card(INCIDENT, counts, names), change_request=_card(CHANGE_REQUEST, counts, names)
        )


def ticket_view(ticket: Ticket, connection: Connection | None) -> TicketView:
    """A ticket as the portal shows it, its state named as the tenant's connection names it."""
    names = _state_names(connection)
    return TicketView(
        id=ticket.ticket_id,
        type=ticket.type,
        number=ticket.number,
        sys_id=ticket.sys_id,
        # No record yet (creating) or none ever (failed): nothing to link to.
        url=record_url(ticket.instance_url, ticket.type, ticket.sys_id) if ticket.sys_id else "",
        state=ticket.state,
        state_name=names[ticket.type].get(ticket.state, ticket.state),
        name=ticket.name,
        description=ticket.description,
        priority=ticket.priority,
        due_date=ticket.due_date,
        recommendation_source=ticket.recommendation_source,
        recommendation_category=ticket.recommendation_category,
        improvement_action_id=ticket.improvement_action_id,
        created_by=ticket.created_by_name,
        created_at=ticket.created_at,
        state_updated_at=ticket.state_updated_at,
        deleted_in_servicenow_at=ticket.deleted_in_servicenow_at,
        status=ticket.status,
        failure_reason=ticket.failure_reason,
        remediation=remediation_view(ticket, connection.remediation_checked_at if connection else None),
    )


def remediation_view(ticket: Ticket, tenant_checked_at: datetime | None = None) -> RemediationView | None:
    """What the Secure Score check and the write-back recorded on the ticket; None for a ticket
    without an improvement action, or one neither checked nor written back yet."""
    write_back = _write_back(ticket)
    if not ticket.improvement_action_id or (ticket.remediation_checked_at is None and write_back is None):
        return None
    return RemediationView(
        status=ticket.remediation_status,
        score=ticket.remediation_score,
        max_score=ticket.remediation_max_score,
        checked_at=_last_check(ticket.remediation_checked_at, tenant_checked_at),
        completed_at=ticket.remediation_completed_at,
        closed_at=ticket.closed_at,
        flags=RemediationFlags(
            closed_without_remediation=ticket.closed_without_remediation,
            remediated_while_open=ticket.remediated_while_open,
            regressed=ticket.regressed,
        ),
        write_back=write_back,
    )


def _last_check(row_checked_at: datetime | None, tenant_checked_at: datetime | None) -> datetime | None:
    """When the ticket was last checked: the row keeps when its result was found (an unchanged
    result is not written again), the connection when the tenant was last checked, which covers
    every ticket the row says was checked before."""
    if row_checked_at is None or tenant_checked_at is None:
        return row_checked_at
    return max(row_checked_at, tenant_checked_at)


def _write_back(ticket: Ticket) -> WriteBack | None:
    """The last write-back to Secure Score; None when none was ever tried."""
    if ticket.write_back_comment is None and ticket.write_back_at is None and ticket.write_back_error is None:
        return None
    return WriteBack(
        comment=ticket.write_back_comment, written_at=ticket.write_back_at, error=ticket.write_back_error
    )


def record_url(instance_url: str, table: str, sys_id: str) -> str:
    """A deep link that opens the record inside the instance's navigation frame."""
    target = f"{table}.do?sys_id={sys_id}"
    return f"{instance_url.rstrip('/')}/nav_to.do?uri={quote(target, safe='')}"


def _card(table: str, counts: TicketCounts, names: StateLabels) -> TicketTypeSummary:
    # A ticket without a ServiceNow state (creating, failed) is on no card: it has no record.
    seen = [state for (kind, state) in counts.states if kind == table and state]
    codes = [*names[table], *sorted(set(seen) - set(names[table]))]
    states = [
        StateCount(state=code, name=names[table].get(code, code), count=counts.states.get((table, code), 0))
        for code in codes
    ]
    flags = FlagCounts(
        closed_without_remediation=counts.flags.get((table, "closedWithoutRemediation"), 0),
        remediated_while_open=counts.flags.get((table, "remediatedWhileOpen"), 0),
        regressed=counts.flags.get((table, "regressed"), 0),
    )
    return TicketTypeSummary(total=sum(s.count for s in states), states=states, flags=flags)


def _state_names(connection: Connection | None) -> StateLabels:
    if connection is None:
        return effective_state_names({})
    return effective_state_names(connection.state_names, connection.instance_state_labels)
