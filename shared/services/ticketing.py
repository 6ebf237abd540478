"""The ticket service the HTTP triggers call: creating tickets (`ticket_creation`) and reading them
(`ticket_queries`), built over the same ports."""

from __future__ import annotations

from shared.clock import SYSTEM_CLOCK, Clock
from shared.identity import Caller
from shared.models import CreateTicket, TicketListQuery, TicketPage, TicketSummary, TicketView
from shared.ports import (
    ConnectionStore,
    IdempotencyClaims,
    ImprovementActions,
    ServiceNowRecords,
    TicketStore,
)
from shared.services.ticket_creation import CreateResult, TicketCreation
from shared.services.ticket_policy import TicketingPolicy
from shared.services.ticket_queries import TicketQueries


class TicketingService:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        tickets: TicketStore,
        idempotency: IdempotencyClaims,
        servicenow: ServiceNowRecords,
        actions: ImprovementActions,
        policy: TicketingPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._creation = TicketCreation(
            connections=connections,
            tickets=tickets,
            idempotency=idempotency,
            servicenow=servicenow,
            actions=actions,
            policy=policy,
            clock=clock,
        )
        self._queries = TicketQueries(connections=connections, tickets=tickets)

    async def create(
        self, caller: Caller, request: CreateTicket, idempotency_key: str | None
    ) -> CreateResult:
        """Create the ticket, or return the one this Idempotency-Key already made (`TicketCreation`)."""
        return await self._creation.create(caller, request, idempotency_key)

    async def page(self, tenant_id: str, query: TicketListQuery) -> TicketPage:
        """One page of the tenant's tickets, newest first."""
        return await self._queries.page(tenant_id, query)

    async def ticket(self, tenant_id: str, ticket_id: str) -> TicketView:
        """One ticket of the tenant; NotFound for unknown ids and other tenants' tickets."""
        return await self._queries.ticket(tenant_id, ticket_id)

    async def summary(self, tenant_id: str) -> TicketSummary:
        """The portal's two cards: per type, the total and a count per state."""
        return await self._queries.summary(tenant_id)
