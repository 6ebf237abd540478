"""The ticket service the triggers call: creating tickets (`ticket_creation`), finishing the ones
ServiceNow did not confirm (`ticket_completion`, the `ticket-creates` worker), reading them
(`ticket_queries`), and the timer's housekeeping (expired idempotency claims deleted, `creating`
tickets whose message was lost queued again), built over the same ports."""

from __future__ import annotations

from shared.clock import SYSTEM_CLOCK, Clock
from shared.identity import Caller
from shared.models import (
    CreateTicket,
    PendingCreate,
    TicketListQuery,
    TicketPage,
    TicketSummary,
    TicketView,
)
from shared.ports import (
    ConnectionStore,
    IdempotencyClaims,
    ImprovementActions,
    MessageQueue,
    ServiceNowRecords,
    TicketCreatedHook,
    TicketStore,
)
from shared.services.sync_fanout import purge_expired_claims
from shared.services.ticket_completion import Completion, TicketCompletion
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
        queue: MessageQueue,
        policy: TicketingPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        created_hook: TicketCreatedHook | None = None,
    ) -> None:
        policy = policy or TicketingPolicy()
        self._creation = TicketCreation(
            connections=connections,
            tickets=tickets,
            idempotency=idempotency,
            servicenow=servicenow,
            actions=actions,
            queue=queue,
            policy=policy,
            clock=clock,
            created_hook=created_hook,
        )
        self._completion = TicketCompletion(
            connections=connections,
            tickets=tickets,
            idempotency=idempotency,
            servicenow=servicenow,
            queue=queue,
            policy=policy,
            clock=clock,
        )
        self._queries = TicketQueries(connections=connections, tickets=tickets)
        self._idempotency = idempotency
        self._policy = policy
        self._clock = clock

    async def create(
        self, caller: Caller, request: CreateTicket, idempotency_key: str | None
    ) -> CreateResult:
        """Create the ticket, or return the one this Idempotency-Key already made (`TicketCreation`)."""
        return await self._creation.create(caller, request, idempotency_key)

    async def complete(self, message: PendingCreate) -> Completion:
        """One round of the `ticket-creates` worker for a `creating` ticket (`TicketCompletion`)."""
        return await self._completion.complete(message)

    async def purge_expired_claims(self) -> int:
        """Delete claims made over `claim_retention` ago (bounded; never raises): the timer's."""
        return await purge_expired_claims(
            self._idempotency,
            before=self._clock.now() - self._policy.claim_retention,
            limit=self._policy.claim_purge_limit,
        )

    async def sweep_pending_creates(self) -> int:
        """Queue a message again for `creating` tickets whose message was lost (bounded; never
        raises): the timer's."""
        return await self._completion.sweep()

    async def page(self, tenant_id: str, query: TicketListQuery) -> TicketPage:
        """One page of the tenant's tickets, newest first."""
        return await self._queries.page(tenant_id, query)

    async def ticket(self, tenant_id: str, ticket_id: str) -> TicketView:
        """One ticket of the tenant; NotFound for unknown ids and other tenants' tickets."""
        return await self._queries.ticket(tenant_id, ticket_id)

    async def summary(self, tenant_id: str) -> TicketSummary:
        """The portal's two cards: per type, the total and a count per state."""
        return await self._queries.summary(tenant_id)
