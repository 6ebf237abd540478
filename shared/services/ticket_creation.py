"""Creating a ticket: an incident or change-request record in the tenant's ServiceNow, and its row.

No duplicates, ever. The protocol (README "Idempotency" says it for API users):

1. The Idempotency-Key (or, without one, a random key per request) is claimed with a conditional
   insert into the `idempotency` table *before* ServiceNow is called (tried first, unread: a key
   claimed before fails the insert, and that claim is read). The claim holds the request
   fingerprint, the ticket id chosen up front, and a lease: until `lease_until` the claimant alone
   may send creates. It is written with `posted_at` = now, covering a POST within `post_grace`.
2. The record goes to ServiceNow with `correlation_id` = that ticket id. A create (POST) is sent
   once per attempt. The access token is fetched first; unless the claim's last write covers a
   POST now (a new claim, within `post_grace`), the lease is renewed (ETag-conditional) and
   `posted_at` written immediately before the POST leaves: a create whose claim was taken over
   meanwhile is never sent, and however slow the token was, the POST has the whole lease.
3. A failure that ServiceNow certainly did not process (never sent, 429, 503 with Retry-After) is
   retried at once (honouring a short Retry-After). After an *ambiguous* one (timeout after
   sending, dropped connection, 500/502/504, bare 503) the record is looked up by correlation id,
   and if it is not there no create is sent until the ambiguous one is `settle_window` old (75 s:
   ServiceNow's transaction quota of 60 s plus a margin), because it may still commit. Meanwhile
   the claim keeps its lease until then. If that is longer than a request waits, the caller gets
   202 and the ticket `creating`: a message goes on `ticket-creates`, invisible until the window
   has passed, then the ticket row (no sys_id or number yet) is written; the `ticket-creates`
   worker (`ticket_completion`) finishes it under the same rules.
4. The ticket row is written (or the `creating` one completed). The row is the create's end; the
   claim is also marked completed when the sweep watches it (`deferred`: a create that did not
   end in its request). A warm create thus writes twice: the claim, then the row.

A second request with the key finds the claim: another body is 422; a ticket row that is not
`creating` is returned (200, also a `failed` one); a `creating` ticket whose lease is held is returned at once (202); in
progress with a live lease and no row waits briefly for it, then 409 `idempotency_key_in_progress`
with Retry-After; in progress with a free or expired lease (the first request gave up, crashed,
or answered 202) takes the lease over, looks ServiceNow up by correlation id, and creates only if
nothing is there and the claim's `posted_at` is older than the settle window. What it would send
is settled before it takes the lease: a `creating` row's own content, else the request's (Secure
Score read again). Twenty concurrent requests with one key therefore make one record. A takeover
of a `creating` ticket answers 202 after any failure but a refusal of the create (`failed`), and
hands the ticket to the worker.

The claim is deleted (the key free again) only when ServiceNow refused the create itself and no
create of the claim may have made a record; any other failure keeps the claim and its ticket id.
Once the ticket is `creating`, a refusal of the create makes it `failed` instead (the claim
completed). A create runs under an overall deadline (`create_deadline_s`), well inside the front
end's limit; past it the caller gets 503 (202 if the ticket is `creating` already). A POST the
deadline cut may still commit, so its settle window counts from the cut, and the claim keeps its
lease until that ends. A claim is deleted by the timer `claim_retention` after it was made.

What is left: a create whose transaction outlives the settle window (an instance whose REST quota
was raised above 60 s, or a transaction queued behind others for long) could still commit after
the lookup that let a second create go. Raise `settle_window` for such instances.

Who does what: `idempotency_claims` keeps the claim (lease, settle window, release, completion),
`ticket_record` finds or creates the record, `ticket_content` says what the record and the row
contain, `ticket_pending` keeps `creating` rows and their messages; this module runs the protocol
from the request to the stored ticket. (It is longer than our usual 300 lines because this
docstring is the protocol's specification; the code is about 250 lines.)
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared import telemetry
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import (
    AppError,
    BadRequest,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.identity import Caller
from shared.models import CreateTicket, ImprovementAction, TicketView
from shared.ports import (
    ConnectionStore,
    IdempotencyClaims,
    ImprovementActions,
    MessageQueue,
    ServiceNowRecord,
    ServiceNowRecords,
    TicketCreatedHook,
    TicketStore,
)
from shared.records import Connection, IdempotencyRecord, Ticket, new_ticket_id, usable_connection
from shared.services.idempotency_claims import (
    ClaimKeeper,
    HeldClaim,
    idempotency_key_hash,
    request_fingerprint,
)
from shared.services.ticket_content import (
    Requester,
    TicketContent,
    check_due_date,
    row_content,
    ticket_content,
)
from shared.services.ticket_pending import PendingCreates
from shared.services.ticket_policy import TicketingPolicy
from shared.services.ticket_queries import ticket_view
from shared.services.ticket_record import RecordMaker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreateResult:
    ticket: TicketView  # its `status` is `creating` while ServiceNow has not confirmed the record
    created: bool  # False: the ticket already existed for this Idempotency-Key


@dataclass
class _Job:
    """One create request as it goes through the protocol."""

    caller: Caller
    request: CreateTicket
    connection: Connection
    deadline: datetime
    action: ImprovementAction | None = None  # read from Secure Score when first needed
    content: TicketContent | None = None  # what a takeover of the claim sends


class TicketCreation:
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
        self._connections = connections
        self._actions = actions
        self._created_hook = created_hook
        self._policy = policy
        self._clock = clock
        self._claims = ClaimKeeper(claims=idempotency, tickets=tickets, policy=policy, clock=clock)
        self._records = RecordMaker(servicenow=servicenow, policy=policy, clock=clock)
        self._pending = PendingCreates(tickets=tickets, claims=self._claims, queue=queue, clock=clock)

    async def create(
        self, caller: Caller, request: CreateTicket, idempotency_key: str | None
    ) -> CreateResult:
        """Create the ticket, or return the one this Idempotency-Key already made. The ticket is
        `creating` when ServiceNow has not confirmed the record yet (a worker finishes it).

        Raises:
            BadRequest: due date in the past, bad Idempotency-Key, unknown improvement action.
            ConnectionNotReady, ReauthorizationRequired: ServiceNow cannot be used for the tenant.
            DependencyNotConfigured: an improvement action is named and Graph is not configured.
            IdempotencyKeyReused: the key was used with another body.
            IdempotencyKeyInProgress: another request with the key is still creating the ticket.
            UpstreamUnavailable: ServiceNow (or Graph, or storage) is down or rate limiting us, or
                the create ran past its deadline (retry_after: when a retry can go on).
            UpstreamRejected: ServiceNow refused the record, or the lookup of it.
        """
        started, outcome = self._clock.now(), "internal_error"
        try:
            result = await self._create(caller, request, idempotency_key)
            outcome = _outcome(result)
            return result
        except AppError as error:
            outcome = error.code
            raise
        finally:
            telemetry.ticket_create(request.type, outcome, (self._clock.now() - started).total_seconds())

    async def _create(
        self, caller: Caller, request: CreateTicket, idempotency_key: str | None
    ) -> CreateResult:
        now = self._clock.now()
        check_due_date(request.due_date, now)
        key_hash = idempotency_key_hash(idempotency_key)
        deadline = now + timedelta(seconds=self._policy.create_deadline_s)
        job = _Job(caller, request, await self._ready_connection(caller.tenant_id), deadline)
        fingerprint = request_fingerprint(request)
        for _ in range(3):  # a claim can vanish (released after a rejection) between writes
            result = await self._claim_and_create(job, key_hash, fingerprint)
            if result is None:  # claimed before: that claim's ticket, or its create finished
                claim = await self._claims.find(caller.tenant_id, key_hash)
                if claim is None:
                    continue
                if claim.fingerprint != fingerprint:
                    raise IdempotencyKeyReused()
                result = await self._repeat(job, claim)
            if result is not None:
                return result
        raise IdempotencyKeyInProgress()

    async def _claim_and_create(self, job: _Job, key_hash: str, fingerprint: str) -> CreateResult | None:
        """Claim the key, then create. None when it was claimed already.

        The claim is tried first, unread: a new key, the common case, costs one write. The
        improvement action is read once the claim is ours; if that fails nothing was sent, and the
        claim is released.
        """
        ticket_id = new_ticket_id(self._clock.now())
        held = await self._claims.claim(job.caller, key_hash, fingerprint, ticket_id)
        if held is None:
            return None  # deal with the other request's claim
        requester = Requester(job.caller.tenant_id, job.caller.user_id, job.caller.name)
        try:
            content = ticket_content(job.request, requester, ticket_id, await self._action(job))
        except AppError:
            await held.release()
            raise
        return await self._fulfil(job, held, content, look_first=False)

    async def _repeat(self, job: _Job, claim: IdempotencyRecord) -> CreateResult | None:
        """The key was claimed: its ticket; or, with the lease now ours, the create an earlier
        request started, finished. None when the claim was released meanwhile.

        The content is settled before the lease is taken: a `creating` row's is the one its first
        create sent (Secure Score is not asked again); without a row it is read as for a new create,
        and an action Secure Score no longer has (400) or no Graph (503) leaves the claim alone.
        """

        async def prepare(row: Ticket | None) -> None:
            if row is not None:
                job.content = row_content(row)
            else:
                requester = Requester(claim.tenant_id, claim.created_by, claim.created_by_name)
                action = await self._action(job)
                job.content = ticket_content(job.request, requester, claim.ticket_id, action)

        job.content = None
        outcome = await self._claims.await_or_take_over(claim, prepare)
        if isinstance(outcome, Ticket):
            return CreateResult(ticket_view(outcome, job.connection), created=False)
        if outcome is None:
            return None
        assert job.content is not None
        if outcome.row is not None and not _same_instance(outcome.row, job.connection):
            # Made for the instance the tenant left: the worker fails it, with its reason.
            until = await outcome.keep() or self._clock.now()
            ticket = await self._defer(job, outcome, job.content, until=until)
            return CreateResult(ticket_view(ticket, job.connection), created=False)
        return await self._fulfil(job, outcome, job.content, look_first=True)

    async def _ready_connection(self, tenant_id: str) -> Connection:
        return usable_connection(await self._connections.recent(tenant_id))

    async def _action(self, job: _Job) -> ImprovementAction | None:
        """The improvement action the request names, read from Secure Score once per request.

        Without Graph its `DependencyNotConfigured` (503) goes to the caller as it is: the action
        cannot be checked, and that is not the caller's mistake.
        """
        action_id = job.request.improvement_action_id
        if action_id is None or job.action is not None:
            return job.action
        try:
            job.action = await self._actions.get_improvement_action(job.caller.tenant_id, action_id)
        except NotFound as exc:
            message = f"Improvement action {action_id} was not found in Microsoft Secure Score."
            raise BadRequest(message, fields=[{"field": "improvementActionId", "message": message}]) from exc
        return job.action

    async def _fulfil(
        self, job: _Job, held: HeldClaim, content: TicketContent, *, look_first: bool
    ) -> CreateResult:
        """Steps 2 to 4: the record (found or made), then the ticket row, then the claim completed;
        or, while ServiceNow may still make it, the `creating` row and its message."""
        fresh = held.row is None  # no row yet: this request makes the ticket
        try:
            outcome = await self._record(job, held, content, look_first=look_first)
        except UpstreamRejected as exc:
            if held.row is None:
                raise
            ticket = await self._pending.fail(held, held.row, exc.message)  # the 202 was given
        except IdempotencyKeyInProgress:
            if held.row is None:
                raise
            ticket = held.row  # the worker took it over: it finishes it
        else:
            if isinstance(outcome, datetime):
                ticket = await self._defer(job, held, content, until=outcome)
            else:
                row = held.row or content.row(instance_url=job.connection.instance_url, at=self._clock.now())
                ticket = await self._pending.finish(held, row, outcome)
                logger.info("Created %s %s (ticket %s)", content.table, ticket.number, ticket.ticket_id)
                if fresh and self._created_hook is not None:
                    await self._created_hook.ticket_created(job.connection, ticket)
        return CreateResult(ticket_view(ticket, job.connection), created=fresh)

    async def _record(
        self, job: _Job, held: HeldClaim, content: TicketContent, *, look_first: bool
    ) -> ServiceNowRecord | datetime:
        """The record, by the deadline; or when a worker may go on with it, when ServiceNow may
        still make it. After a failure the claim is released only if no create of it can have
        made a record; else it is kept, with its lease while one may still commit.

        A `creating` ticket (answered 202 before) goes to the worker after any failure but
        ServiceNow refusing the create itself (which raises UpstreamRejected: it is `failed`).
        """
        try:
            # The clock sets the deadline; only a timer can end an await that hangs (a token
            # refresh, a POST), so the time left to it is handed to one.
            async with asyncio.timeout((job.deadline - self._clock.now()).total_seconds()):
                return await self._records.find_or_create(
                    held, job.connection, content, look_first=look_first, deadline=job.deadline
                )
        except TimeoutError:
            until = await held.cut_off()  # a POST on the wire may commit: its window starts now
            if held.row is not None:  # `creating` already: the worker goes on once the lease ends
                return until
            raise self._overdue(held, until) from None
        except IdempotencyKeyInProgress:
            raise  # another request took the claim over: it is theirs to write now
        except AppError as exc:
            held.outcome_unknown()
            nothing_made = held.refused and not held.may_have_made_a_record and held.row is None
            if isinstance(exc, UpstreamRejected) and nothing_made:
                await held.release()  # ServiceNow refused the record and none can exist: the key is free
                raise
            settles = await held.keep()
            if held.row is not None and not (isinstance(exc, UpstreamRejected) and held.refused):
                return self._retry_at(exc, settles)
            if isinstance(exc, UpstreamUnavailable) and settles is not None and held.claim.deferred:
                return settles  # not known yet, and too long to wait for here: answered 202
            raise  # a claim not marked deferred would hide a `creating` row from the sweep

    def _retry_at(self, error: AppError, settles: datetime | None) -> datetime:
        """When a retry after `error` can make progress: the settle window, ServiceNow's Retry-After."""
        now = self._clock.now()
        wait = error.retry_after if isinstance(error, UpstreamUnavailable) else 0
        return max(settles or now, now + timedelta(seconds=wait))

    async def _defer(self, job: _Job, held: HeldClaim, content: TicketContent, *, until: datetime) -> Ticket:
        """The `creating` row, with a message for the worker at `until`.

        Raises:
            UpstreamUnavailable: storage did not answer; retry_after: when a retry can go on.
        """
        row = held.row or content.row(instance_url=job.connection.instance_url, at=self._clock.now())
        client_id = job.connection.client_id
        try:
            return await self._pending.defer(
                held.claim.key_hash, content, row, until=until, client_id=client_id
            )
        except UpstreamUnavailable as exc:
            if held.row is not None:
                # The ticket is stored `creating` and keeps its claim: the timer's sweep queues it.
                logger.warning("Ticket %s: no message queued (%s)", row.ticket_id, exc.message)
                return held.row
            # Not before a retry can make progress: the claim keeps its lease until `until`.
            left = math.ceil((until - self._clock.now()).total_seconds())
            raise UpstreamUnavailable(exc.message, retry_after=max(exc.retry_after, left)) from exc

    def _overdue(self, held: HeldClaim, until: datetime) -> UpstreamUnavailable:
        """The create ran out of time. The claim keeps its lease until `until` (a POST may have
        been on the wire): a retry can go on then."""
        logger.warning("Creating ticket %s took longer than its deadline", held.claim.ticket_id)
        return UpstreamUnavailable(
            "ServiceNow is too slow to create the ticket now. Retry with the same Idempotency-Key "
            "after the Retry-After time.",
            retry_after=max(1, math.ceil((until - self._clock.now()).total_seconds())),
            ambiguous=held.may_have_made_a_record,
        )


def _outcome(result: CreateResult) -> str:
    """`creating` (answered 202), `created` (a new record), or `existing` (the key's ticket)."""
    if result.ticket.status == "creating":
        return "creating"
    return "created" if result.created else "existing"


def _same_instance(row: Ticket, connection: Connection) -> bool:
    return row.instance_url.rstrip("/") == connection.instance_url.rstrip("/")
