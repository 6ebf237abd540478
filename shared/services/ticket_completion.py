"""The `ticket-creates` worker: finishes a ticket whose create ServiceNow did not confirm.

`POST /api/tickets` answers 202 (`creating`) when a create may have made the record and a lookup
did not find it yet (`ticket_creation`). It queues a message, invisible until the settle window
of that create has passed, and each message is one round here, under the claim's rules:

- A message whose row was never written (the request stopped after queueing it) writes it first:
  the message carries it.
- The round takes the claim's lease over only when it is free or run out; while someone holds it
  (a repeat of the key, or a message come early) the message comes back when the lease ends.
- The tenant's connection must still be the one the row was made in, and usable: a removed or
  reconfigured connection, or a dead grant, makes the ticket `failed` with a reason. A connection
  waiting for consent on the same instance and client (a rotated client secret) is waited for:
  the message comes back every `consent_poll`, no round, until `consent_wait` after the ticket
  was made.
- The record is looked up by correlation id and created only if ServiceNow has none and no earlier
  create of the claim can still commit (`ticket_record`). Found or made: the row gets the record
  and `created`, and the claim is completed.
- ServiceNow refusing the create: `failed` with its reason, the claim completed (the key answers
  with the failed ticket, and never creates).
- Not known again (ambiguous, unavailable, a refused lookup, past the deadline): the message is
  sent again for when a retry can make progress (the settle window, counted from the deadline
  for a POST it cut, or Retry-After), one round more. The last of `completion_rounds` only looks,
  after every create of the claim has settled: a record found is taken, none found means none
  will come, and the ticket is `failed`.

A round raises only what is not ours to judge (a bug, a setting that fails validation, a queue
that refuses the next message), after freeing the lease it took (kept while a POST may commit),
so the host's retry of the message is a round again; after `maxDequeueCount` the message goes to
`ticket-creates-poison`. The row stays `creating`, and the timer's `sweep` queues it again once
nobody wrote its claim for `sweep_after`; a repeat of the key after the lease finishes it too.
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
        if claim is None or claim.ticket_id != message.ticket_id:
            logger.info("Ticket %s has no pending create (no claim): nothing to do", message.ticket_id)
            return "skipped"
        row = await self._tickets.get(message.tenant_id, message.ticket_id)
        if row is None and claim.status == "in_progress":
            row = await self._pending.restore(message)  # the request stopped before writing it
        if row is None:
            logger.info("Ticket %s has no row: nothing to do", message.ticket_id)
            return "skipped"
        if row.status != "creating" or claim.status != "in_progress":
            await self._claims.mark_completed(claim)  # finished by a repeat of the key meanwhile
            return "skipped"
        held = await self._claims.take_over(claim)
        if held is None:  # someone holds the lease: after it ends
            return await self._after_lease(message, row)
        held.row = row
        try:
            return await self._work(message, held, row)
        except Exception:
            # Not ours to judge (a bug, a setting): the host retries the message, which must find
            # the lease as the round left it, not held for a round that is over.
            held.outcome_unknown()
            await held.keep()
            raise

    async def sweep(self) -> int:
        """The timer's: queue a message again for `creating` tickets whose message was lost
        (`PendingCreates.sweep`); how many. Never raises."""
        now = self._clock.now()
        return await self._pending.sweep(
            written_before=now - self._policy.sweep_after,
            created_after=now - self._policy.sweep_horizon,
            limit=self._policy.sweep_limit,
        )

    async def _work(self, message: PendingCreate, held: HeldClaim, row: Ticket) -> Completion:
        connection = await self._connections.get(row.tenant_id)
        stopped = await self._stop_for_connection(message, held, row, connection)
        if stopped is not None:
            return stopped
        assert connection is not None
        return await self._round(message, held, connection, row)

    async def _stop_for_connection(
        self, message: PendingCreate, held: HeldClaim, row: Ticket, connection: Connection | None
    ) -> Completion | None:
        """How the round ends when the connection cannot be used for it now (waits for consent, or
        `failed`); None when it can."""
        if _awaits_consent(connection, row, message):
            return await self._await_consent(message, held, row)
        problem = _unusable(connection, row)
        if problem is None:
            return None
        await self._pending.fail(held, row, problem + _maybe_made(held, row))
        return "failed"

    async def _round(
        self, message: PendingCreate, held: HeldClaim, connection: Connection, row: Ticket
    ) -> Completion:
        last = message.round + 1 >= self._policy.completion_rounds
        settling = held.settle_left()
        if last and settling > 0:  # the last round only looks, once no create can still commit
            until = await held.keep() or self._clock.now() + timedelta(seconds=settling)
            return await self._again(message, row, until=until, round=message.round)
        try:
            record = await self._record(message, held, connection, last=last)
        except TimeoutError:  # a POST on the wire may still commit: after its window, from now
            until = await held.cut_off()
            return await self._again(message, row, until=until, round=message.round + 1)
        except IdempotencyKeyInProgress:  # a repeat of the key took the claim over: after its lease
            return await self._after_lease(message, row)
        except AppError as exc:
            return await self._failed_round(message, held, row, exc, last=last)
        if record is not None:
            await self._pending.finish(held, row, record)
            logger.info("Ticket %s confirmed by ServiceNow (round %d)", row.ticket_id, message.round + 1)
            return "created"
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
            connection = await self._connections.get(row.tenant_id)
            stopped = await self._stop_for_connection(message, held, row, connection)
            if stopped is not None:
                return stopped
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

    async def _await_consent(self, message: PendingCreate, held: HeldClaim, row: Ticket) -> Completion:
        """The connection waits for an admin's consent (a rotated client secret): the message
        comes back later, no round, until `consent_wait` after the ticket was made."""
        if self._clock.now() >= row.created_at + self._policy.consent_wait:
            reason = "ServiceNow was still waiting for an admin to authorize the connection again."
            await self._pending.fail(held, row, reason + _maybe_made(held, row))
            return "failed"
        settles = await held.keep()  # nothing was sent: the lease as the last create left it
        until = max(settles or self._clock.now(), self._clock.now() + self._policy.consent_poll)
        logger.info("Ticket %s waits for the connection to be authorized again", row.ticket_id)
        return await self._again(message, row, until=until, round=message.round)

    async def _after_lease(self, message: PendingCreate, row: Ticket) -> Completion:
        """Someone else holds the claim: the message comes back when their lease ends (no round)."""
        current = await self._claims.find(message.tenant_id, message.key_hash)
        until = current.lease_until if current is not None else None
        return await self._again(message, row, until=until, round=message.round)

    async def _again(
        self, message: PendingCreate, row: Ticket, *, until: datetime | None, round: int
    ) -> Completion:
        # A second after the lease or window: a message visible a moment early finds it still held.
        # A send that fails raises: the host retries this message, and the timer's sweep queues the
        # ticket again if none gets through.
        when = max(until or self._clock.now(), self._clock.now()) + timedelta(seconds=1)
        await self._pending.defer(
            message.key_hash, message, row, until=when, round=round, client_id=message.client_id
        )
        return "again"


def _awaits_consent(connection: Connection | None, row: Ticket, message: PendingCreate) -> bool:
    """The connection is `pending_authorization` on the row's instance and with the client the
    ticket was made with (unknown in older messages): a secret rotated, consent still to come."""
    return (
        connection is not None
        and connection.status == ConnectionStatus.PENDING_AUTHORIZATION
        and _same_instance(connection, row)
        and message.client_id in (None, connection.client_id)
    )


def _unusable(connection: Connection | None, row: Ticket) -> str | None:
    """Why the record cannot be made through the tenant's connection any more; None if it can."""
    if connection is None or connection.status == ConnectionStatus.NOT_CONFIGURED:
        return "ServiceNow was disconnected for this tenant before it confirmed the ticket."
    if connection.status == ConnectionStatus.PENDING_AUTHORIZATION:
        return "ServiceNow is waiting for an admin to authorize the connection again."
    if connection.status == ConnectionStatus.REAUTHORIZATION_REQUIRED:
        return (
            "The ServiceNow authorization expired or was revoked before ServiceNow confirmed the "
            "ticket. An admin must re-authorize."
        )
    if not _same_instance(connection, row):
        return "The tenant connected another ServiceNow instance before it confirmed the ticket."
    return None


def _same_instance(connection: Connection, row: Ticket) -> bool:
    return connection.instance_url.rstrip("/") == row.instance_url.rstrip("/")


def _maybe_made(held: HeldClaim, row: Ticket) -> str:
    if not held.may_have_made_a_record:
        return ""
    return f" A record with correlation id {row.ticket_id} may exist in ServiceNow all the same."
