"""The `ticket-creates` worker: finishes a ticket whose create ServiceNow did not confirm.

`POST /api/tickets` answers 202 (`creating`) when a create may have made the record and a lookup
did not find it yet (`ticket_creation`). It queues a message, invisible until the settle window
of that create has passed, and each message is one round here, under the claim's rules:

- The round takes the claim's lease over only when it is free or run out; while someone holds it
  (a repeat of the key, or a message come early) the message comes back when the lease ends.
- The tenant's connection must still be the one the row was made in, and usable: a removed or
  reconfigured connection, or a dead grant, makes the ticket `failed` with a reason.
- The record is looked up by correlation id and created only if ServiceNow has none and no earlier
  create of the claim can still commit (`ticket_record`). Found or made: the row gets the record
  and `created`, and the claim is completed.
- ServiceNow refusing the create: `failed` with its reason, the claim completed (the key answers
  with the failed ticket, and never creates).
- Not known again (ambiguous, unavailable, a refused lookup, past the deadline): the message is
  sent again for when a retry can make progress (the settle window, or Retry-After), one round
  more. The last of `completion_rounds` only looks, after every create of the claim has settled:
  a record found is taken, none found means none will come, and the ticket is `failed`.

A round raises only what is not ours to judge (a bug); the host then retries the message and,
after `maxDequeueCount`, moves it to `ticket-creates-poison`. The row stays `creating`; a repeat
of the key after the lease takes it over and finishes it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Literal

from shared.clock import Clock
from shared.errors import (
    AppError,
    ConnectionNotReady,
    IdempotencyKeyInProgress,
    ReauthorizationRequired,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.models import ConnectionStatus, PendingCreate
from shared.ports import (
    ConnectionStore,
    IdempotencyClaims,
    MessageQueue,
    ServiceNowRecord,
    ServiceNowRecords,
    TicketStore,
)
from shared.records import Connection, Ticket
from shared.services.idempotency_claims import ClaimKeeper, HeldClaim
from shared.services.ticket_pending import PendingCreates
from shared.services.ticket_policy import TicketingPolicy
from shared.services.ticket_record import RecordMaker

logger = logging.getLogger(__name__)

Completion = Literal["created", "failed", "again", "skipped"]


class TicketCompletion:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        tickets: TicketStore,
        idempotency: IdempotencyClaims,
        servicenow: ServiceNowRecords,
        queue: MessageQueue,
        policy: TicketingPolicy,
        clock: Clock,
    ) -> None:
        self._connections = connections
        self._tickets = tickets
        self._policy = policy
        self._clock = clock
        self._claims = ClaimKeeper(claims=idempotency, tickets=tickets, policy=policy, clock=clock)
        self._records = RecordMaker(servicenow=servicenow, policy=policy, clock=clock)
        self._pending = PendingCreates(tickets=tickets, claims=self._claims, queue=queue, clock=clock)

    async def complete(self, message: PendingCreate) -> Completion:
        """One round for the message's ticket, if it is still `creating`. How the round ended."""
        claim = await self._claims.find(message.tenant_id, message.key_hash)
        row = await self._tickets.get(message.tenant_id, message.ticket_id)
        if claim is None or claim.ticket_id != message.ticket_id or row is None:
            logger.info("Ticket %s has no pending create (no claim or row): nothing to do", message.ticket_id)
            return "skipped"
        if row.status != "creating" or claim.status != "in_progress":
            await self._claims.mark_completed(claim)  # finished by a repeat of the key meanwhile
            return "skipped"
        held = await self._claims.take_over(claim)
        if held is None:  # someone holds the lease: after it ends
            return await self._again(message, row, until=claim.lease_until, round=message.round)
        held.row = row
        connection, problem = await self._connection(row)
        if problem is not None:
            await self._pending.fail(held, row, problem + _maybe_made(held, row))
            return "failed"
        assert connection is not None
        return await self._round(message, held, connection, row)

    async def _round(
        self, message: PendingCreate, held: HeldClaim, connection: Connection, row: Ticket
    ) -> Completion:
        last = message.round + 1 >= self._policy.completion_rounds
        try:
            record = await self._record(message, held, connection, last=last)
        except TimeoutError:  # a POST may be on the wire: after its lease
            return await self._again(message, row, until=held.claim.lease_until, round=message.round + 1)
        except IdempotencyKeyInProgress:  # a repeat of the key took the claim over: after its lease
            current = await self._claims.find(message.tenant_id, message.key_hash)
            until = current.lease_until if current is not None else None
            return await self._again(message, row, until=until, round=message.round)
        except AppError as exc:
            return await self._failed_round(message, held, row, exc, last=last)
        if record is not None:
            await self._pending.finish(held, row, record)
            logger.info("Ticket %s confirmed by ServiceNow (round %d)", row.ticket_id, message.round + 1)
            return "created"
        settling = held.settle_left()
        if settling > 0:  # the last round came before the settle window ended
            until = self._clock.now() + timedelta(seconds=settling)
            return await self._again(message, row, until=until, round=message.round)
        reason = "ServiceNow did not confirm creating the record, and has none for this ticket."
        await self._pending.fail(held, row, reason + " Create the ticket again.")
        return "failed"

    async def _record(
        self, message: PendingCreate, held: HeldClaim, connection: Connection, *, last: bool
    ) -> ServiceNowRecord | None:
        """The record, found or made by the deadline; in the last round only looked for (None:
        not there)."""
        deadline = self._clock.now() + timedelta(seconds=self._policy.create_deadline_s)
        async with asyncio.timeout(self._policy.create_deadline_s):
            if last:
                return await self._records.find(connection, message)
            return await self._records.find_or_create(
                held, connection, message, look_first=True, deadline=deadline
            )

    async def _failed_round(
        self, message: PendingCreate, held: HeldClaim, row: Ticket, error: AppError, *, last: bool
    ) -> Completion:
        """After a round that did not end in a record: `failed` when that is final, else again."""
        held.outcome_unknown()
        if isinstance(error, UpstreamRejected) and held.refused:
            await self._pending.fail(held, row, error.message)
            return "failed"
        if isinstance(error, ConnectionNotReady | ReauthorizationRequired):
            _, problem = await self._connection(row)
            if problem is not None:
                await self._pending.fail(held, row, problem + _maybe_made(held, row))
                return "failed"
        if last:
            reason = f"ServiceNow could not be asked whether it made the record: {error.message}"
            await self._pending.fail(held, row, reason + _maybe_made(held, row))
            return "failed"
        settles = await held.keep()
        until = self._clock.now()
        if isinstance(error, UpstreamUnavailable):
            until += timedelta(seconds=error.retry_after)
        logger.warning("Ticket %s not confirmed yet: %s", row.ticket_id, error.message)
        return await self._again(message, row, until=max(until, settles or until), round=message.round + 1)

    async def _again(
        self, message: PendingCreate, row: Ticket, *, until: datetime | None, round: int
    ) -> Completion:
        # A second after the lease or window: a message visible a moment early finds it still held.
        when = max(until or self._clock.now(), self._clock.now()) + timedelta(seconds=1)
        await self._pending.defer(message.key_hash, message, row, until=when, round=round)
        return "again"

    async def _connection(self, row: Ticket) -> tuple[Connection | None, str | None]:
        """The tenant's connection if the record can still be made through it, else why not."""
        connection = await self._connections.get(row.tenant_id)
        if connection is None or connection.status == ConnectionStatus.NOT_CONFIGURED:
            return None, "ServiceNow was disconnected for this tenant before it confirmed the ticket."
        if connection.status == ConnectionStatus.PENDING_AUTHORIZATION:
            return None, "ServiceNow is waiting for an admin to authorize the connection again."
        if connection.status == ConnectionStatus.REAUTHORIZATION_REQUIRED:
            return None, (
                "The ServiceNow authorization expired or was revoked before ServiceNow confirmed the "
                "ticket. An admin must re-authorize."
            )
        if connection.instance_url.rstrip("/") != row.instance_url.rstrip("/"):
            return None, "The tenant connected another ServiceNow instance before it confirmed the ticket."
        return connection, None


def _maybe_made(held: HeldClaim, row: Ticket) -> str:
    if not held.may_have_made_a_record:
        return ""
    return f" A record with correlation id {row.ticket_id} may exist in ServiceNow all the same."
