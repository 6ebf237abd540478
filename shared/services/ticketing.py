"""Tickets: create incident and change-request records in the tenant's ServiceNow, list them, count them.

No duplicates, ever. The protocol (README "Idempotency" says it for API users):

1. The Idempotency-Key (or, without one, a random key per request) is claimed with a conditional
   insert into the `idempotency` table *before* ServiceNow is called. The claim holds the request
   fingerprint, the ticket id chosen up front, and a lease: until `lease_until` the claimant alone
   may send creates.
2. The record goes to ServiceNow with `correlation_id` = that ticket id. A create (POST) is sent
   once per attempt. The access token is fetched first; then the lease is renewed
   (ETag-conditional) and `posted_at` written, immediately before the POST leaves: a create whose
   claim was taken over meanwhile is never sent, and however slow the token was, the POST has
   the whole lease.
3. A failure that ServiceNow certainly did not process (never sent, 429, 503 with Retry-After) is
   retried at once (honouring a short Retry-After). After an *ambiguous* one (timeout after
   sending, dropped connection, 500/502/504, bare 503) the record is looked up by correlation id,
   and if it is not there no create is sent until the ambiguous one is `settle_window` old (75 s:
   ServiceNow's transaction quota of 60 s plus a margin), because it may still commit. Meanwhile
   the claim keeps its lease until then and the caller gets 503 with Retry-After = the time left.
4. The ticket row is written, then the claim marked completed.

A second request with the key finds the claim: another body is 422; completed returns the ticket
(200); in progress with a live lease waits briefly for it, then 409 `idempotency_key_in_progress`
with Retry-After; in progress with a free or expired lease (the first request gave up, or
crashed) takes the lease over, looks ServiceNow up by correlation id, and creates only if nothing
is there and the claim's `posted_at` is older than the settle window. Twenty concurrent requests
with one key therefore make one record.

The claim is deleted (the key free again) only when ServiceNow refused the create itself and no
create of the claim may have made a record; any other failure keeps the claim and its ticket id.
A create runs under an overall deadline (`create_deadline_s`), well inside the front end's limit;
past it the caller gets 503 and the lease is kept.

What is left: a create whose transaction outlives the settle window (an instance whose REST quota
was raised above 60 s, or a transaction queued behind others for long) could still commit after
the lookup that let a second create go. Raise `settle_window` for such instances.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from shared.errors import (
    AppError,
    BadRequest,
    ConnectionNotReady,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    NotFound,
    PreconditionFailed,
    ReauthorizationRequired,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.identity import Caller
from shared.models import (
    ConnectionStatus,
    CreateTicket,
    ImprovementAction,
    RecommendationCategory,
    StateCount,
    TicketListQuery,
    TicketPage,
    TicketSummary,
    TicketType,
    TicketTypeSummary,
    TicketView,
)
from shared.ports import ImprovementActions
from shared.records import Connection, IdempotencyRecord, Ticket, new_ticket_id
from shared.services import ticket_mapping as mapping
from shared.ticket_states import CHANGE_REQUEST, INCIDENT, effective_state_names

logger = logging.getLogger(__name__)

Record = dict[str, Any]
RECORD_FIELDS = ["sys_id", "number", "state", "priority", "sys_updated_on", "correlation_id"]
_DEFAULT_STATE = {INCIDENT: "1", CHANGE_REQUEST: "-5"}
_MAX_KEY_LENGTH = 255


# --- ports ------------------------------------------------------------------------------------------


class Connections(Protocol):
    async def get(self, tenant_id: str) -> Connection | None: ...


class Tickets(Protocol):
    async def add(self, ticket: Ticket) -> Ticket: ...

    async def get(self, tenant_id: str, ticket_id: str) -> Ticket | None: ...

    async def page(
        self,
        tenant_id: str,
        *,
        type: TicketType | None = None,
        state: str | None = None,
        top: int = 50,
        continuation_token: str | None = None,
    ) -> tuple[list[Ticket], str | None]: ...

    async def count_by_state(self, tenant_id: str) -> dict[tuple[str, str], int]: ...


class IdempotencyClaims(Protocol):
    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord: ...

    async def get(self, tenant_id: str, key_hash: str) -> IdempotencyRecord | None: ...

    async def replace(self, record: IdempotencyRecord) -> IdempotencyRecord: ...

    async def release(self, record: IdempotencyRecord) -> None: ...


class ServiceNowRecords(Protocol):
    """The part of `ServiceNowTables` tickets need: `create` is sent once, `find_one` is retried.

    `create` awaits `before_post` immediately before the POST leaves (after fetching the access
    token) and raises `UpstreamUnavailable` with `ambiguous` set when ServiceNow may have made the
    record all the same.
    """

    async def create(
        self,
        connection: Connection,
        table: str,
        fields: dict[str, str],
        *,
        before_post: Callable[[], Awaitable[None]] | None = None,
    ) -> Record: ...

    async def find_one(
        self, connection: Connection, table: str, query: str, fields: list[str]
    ) -> Record | None: ...


@dataclass(frozen=True)
class TicketingPolicy:
    """How hard a create tries, and how the idempotency claim is shared between requests.

    `lease` must outlast one create attempt including ServiceNow's own processing (its quota
    cancels a transaction after 60 s), so a takeover never runs beside a live attempt; it is at
    least `settle_window`.
    """

    create_attempts: int = 3
    max_retry_wait_s: float = 10.0  # a longer Retry-After is passed on to the caller as a 503
    backoff_s: float = 0.5  # between attempts when ServiceNow gave no Retry-After
    lease: timedelta = timedelta(seconds=90)
    # After a create that ServiceNow may have processed without telling us (timeout, dropped
    # connection, 5xx), no other is sent until that one is this old: its transaction may run for
    # ServiceNow's quota of 60 s and commit after our lookup. 60 s plus a margin.
    settle_window: timedelta = timedelta(seconds=75)
    # The whole create (waits, lookups, token, POSTs) ends by then, well inside the ~230 s the
    # front end gives a request; past it the caller gets 503 and the lease is kept.
    create_deadline_s: float = 60.0
    wait_for_claim_s: float = 10.0  # a repeat waits this long for a concurrent create to finish
    poll_interval_s: float = 0.1

    def __post_init__(self) -> None:
        if self.lease < self.settle_window:
            raise ValueError("lease must be at least settle_window")


@dataclass(frozen=True)
class CreateResult:
    ticket: TicketView
    created: bool  # False: the ticket already existed for this Idempotency-Key


@dataclass
class _Held:
    """The claim as this request last wrote it (its ETag moves with every write), and what this
    request knows about the creates sent for it."""

    claim: IdempotencyRecord
    # When the latest create that ServiceNow may have carried out was sent; None: there is none.
    maybe_made: datetime | None
    # When the POST now on the wire left (set once its lease renewal is written).
    sending: datetime | None = None
    # ServiceNow refused the create itself (not a lookup).
    refused: bool = False

    def unknown_outcome(self, now: datetime) -> None:
        """The POST on the wire ended without telling whether it made the record.

        The settle window counts from now, not from when the POST was noted: it may have waited
        for a pooled connection after that, so only now is surely after ServiceNow got it.
        """
        if self.sending is not None:
            self.maybe_made = now
            self.sending = None


@dataclass(frozen=True)
class _Details:
    """What goes into the record, after filling gaps from Secure Score."""

    name: str
    text: str
    category: RecommendationCategory
    action_id: str | None
    action_link: str | None


class TicketingService:
    def __init__(
        self,
        *,
        connections: Connections,
        tickets: Tickets,
        idempotency: IdempotencyClaims,
        servicenow: ServiceNowRecords,
        actions: ImprovementActions,
        policy: TicketingPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._connections = connections
        self._tickets = tickets
        self._idempotency = idempotency
        self._servicenow = servicenow
        self._actions = actions
        self._policy = policy or TicketingPolicy()
        self._clock = clock
        self._sleep = sleep

    # --- create ---------------------------------------------------------------------------------

    async def create(
        self, caller: Caller, request: CreateTicket, idempotency_key: str | None
    ) -> CreateResult:
        """Create the ticket, or return the one this Idempotency-Key already made.

        Raises:
            BadRequest: due date in the past, bad Idempotency-Key, unknown improvement action.
            ConnectionNotReady, ReauthorizationRequired: ServiceNow cannot be used for the tenant.
            IdempotencyKeyReused: the key was used with another body.
            IdempotencyKeyInProgress: another request with the key is still creating the ticket.
            UpstreamUnavailable: ServiceNow (or Graph, or storage) is down or rate limiting us, a
                create's outcome is not known yet (retry_after: when a retry can go on), or the
                create ran past its deadline.
            UpstreamRejected: ServiceNow refused the record, or the lookup of it.
        """
        deadline = asyncio.get_running_loop().time() + self._policy.create_deadline_s
        self._check_due_date(request.due_date)
        key_hash = idempotency_key_hash(idempotency_key)
        connection = await self._ready_connection(caller.tenant_id)
        fingerprint = request_fingerprint(request)
        details: _Details | None = None
        for _ in range(3):  # a claim can vanish (released after a rejection) between reads
            claim = await self._idempotency.get(caller.tenant_id, key_hash)
            if claim is None:
                details = details or await self._details(caller.tenant_id, request)
                try:
                    claim = await self._idempotency.claim(self._new_claim(caller, key_hash, fingerprint))
                except PreconditionFailed:
                    continue  # a concurrent request claimed it first: deal with its claim
                ticket = await self._fulfil(
                    claim, connection, request, details, look_first=False, deadline=deadline
                )
                return CreateResult(ticket, created=True)
            if claim.fingerprint != fingerprint:
                raise IdempotencyKeyReused()
            outcome = await self._await_or_take_over(claim)
            if isinstance(outcome, Ticket):
                return CreateResult(self._view(outcome, connection), created=False)
            if outcome is not None:  # the lease is ours: finish what the earlier request started
                details = details or await self._details(caller.tenant_id, request)
                ticket = await self._fulfil(
                    outcome, connection, request, details, look_first=True, deadline=deadline
                )
                return CreateResult(ticket, created=True)
        raise IdempotencyKeyInProgress()

    def _check_due_date(self, due: date) -> None:
        # A day is in the past only once it is over everywhere: the last place to leave a date
        # is UTC-12, so a user late in the day west of Greenwich can still pick "today".
        if due < (self._clock() - timedelta(hours=12)).date():
            raise BadRequest(
                "dueDate is in the past.", fields=[{"field": "dueDate", "message": "must not be in the past"}]
            )

    async def _ready_connection(self, tenant_id: str) -> Connection:
        connection = await self._connections.get(tenant_id)
        if connection is None or connection.status in (
            ConnectionStatus.NOT_CONFIGURED,
            ConnectionStatus.PENDING_AUTHORIZATION,
        ):
            raise ConnectionNotReady()
        if connection.status == ConnectionStatus.REAUTHORIZATION_REQUIRED:
            raise ReauthorizationRequired()
        return connection

    async def _details(self, tenant_id: str, request: CreateTicket) -> _Details:
        action: ImprovementAction | None = None
        action_id = request.improvement_action_id
        if action_id is not None:
            try:
                action = await self._actions.get_improvement_action(tenant_id, action_id)
            except NotFound as exc:
                message = f"Improvement action {action_id} was not found in Microsoft Secure Score."
                raise BadRequest(
                    message, fields=[{"field": "improvementActionId", "message": message}]
                ) from exc
        name = request.name or (mapping.clip(action.title.strip(), mapping.NAME_MAX) if action else "")
        if request.description is not None:
            text = request.description
        else:
            text = (
                mapping.clip(mapping.plain_text(action.remediation or ""), mapping.DESCRIPTION_MAX)
                if action
                else ""
            )
        category = request.recommendation_category or (action.control_category if action else None)
        if not name or category is None:
            missing = "name" if not name else "recommendationCategory"
            message = f"{missing} is required: Secure Score has none for this improvement action."
            raise BadRequest(message, fields=[{"field": missing, "message": message}])
        link = mapping.improvement_action_link(action_id, action) if action_id is not None else None
        return _Details(name=name, text=text, category=category, action_id=action_id, action_link=link)

    def _new_claim(self, caller: Caller, key_hash: str, fingerprint: str) -> IdempotencyRecord:
        now = self._clock()
        return IdempotencyRecord(
            tenant_id=caller.tenant_id,
            key_hash=key_hash,
            fingerprint=fingerprint,
            ticket_id=new_ticket_id(now),
            status="in_progress",
            created_by=caller.user_id,
            created_by_name=caller.name,
            created_at=now,
            lease_until=now + self._policy.lease,
        )

    async def _await_or_take_over(self, claim: IdempotencyRecord) -> Ticket | IdempotencyRecord | None:
        """The finished ticket; or the claim with its lease now ours; or None if it was released.

        Raises:
            IdempotencyKeyInProgress: the claimant still holds its lease after our wait.
        """
        deadline = time.monotonic() + self._policy.wait_for_claim_s
        current: IdempotencyRecord | None = claim
        while current is not None:
            ticket = await self._tickets.get(current.tenant_id, current.ticket_id)
            if ticket is not None:
                if current.status != "completed":  # the claimant stored the ticket, then stopped
                    await self._mark_completed(current)
                return ticket
            now = self._clock()
            if current.status == "in_progress" and (
                current.lease_until is None or current.lease_until <= now
            ):
                try:
                    return await self._idempotency.replace(
                        current.model_copy(update={"lease_until": now + self._policy.lease})
                    )
                except PreconditionFailed:
                    pass  # another request took it over first: wait for that one instead
            elif time.monotonic() >= deadline:
                left = (current.lease_until - now).total_seconds() if current.lease_until else 1.0
                raise IdempotencyKeyInProgress(retry_after=math.ceil(left))  # when the lease ends
            else:
                await self._sleep(self._policy.poll_interval_s)
            current = await self._idempotency.get(claim.tenant_id, claim.key_hash)
        return None

    async def _fulfil(
        self,
        claim: IdempotencyRecord,
        connection: Connection,
        request: CreateTicket,
        details: _Details,
        *,
        look_first: bool,
        deadline: float,
    ) -> TicketView:
        fields = mapping.record_fields(
            ticket_id=claim.ticket_id,
            ticket_type=request.type,
            name=details.name,
            text=details.text,
            priority=request.priority,
            due=request.due_date,
            source=request.recommendation_source,
            category=details.category,
            action_id=details.action_id,
            action_link=details.action_link,
            user_name=claim.created_by_name,
            user_id=claim.created_by,
        )
        held = _Held(claim, maybe_made=claim.posted_at)
        try:
            async with asyncio.timeout_at(deadline):
                record = await self._create_or_find(
                    held, connection, request.type, fields, look_first=look_first, deadline=deadline
                )
        except TimeoutError:
            raise self._overdue(held) from None
        except IdempotencyKeyInProgress:
            raise  # another request took the claim over: it is theirs to write now
        except AppError as exc:
            held.unknown_outcome(self._clock())
            if isinstance(exc, UpstreamRejected) and held.refused and held.maybe_made is None:
                # ServiceNow refused the record and no create of this claim can have made one.
                await self._quietly(self._idempotency.release(held.claim))  # the key is free
                raise
            settles = await self._keep_claim(held)
            if isinstance(exc, UpstreamUnavailable) and settles is not None:
                raise self._retry_when_settled(exc, settles) from exc
            raise
        ticket = await self._store(self._ticket(held.claim, connection, request, details, record))
        await self._mark_completed(held.claim)
        logger.info("Created %s %s (ticket %s)", request.type, ticket.number, ticket.ticket_id)
        return self._view(ticket, connection)

    async def _create_or_find(
        self,
        held: _Held,
        connection: Connection,
        table: str,
        fields: dict[str, str],
        *,
        look_first: bool,
        deadline: float,
    ) -> Record:
        """The record: found by correlation id, or created by one of a few single-shot attempts.

        A create is sent only while no earlier one may still commit (`held.maybe_made` older
        than the settle window) and only right after a lookup that found nothing (unless nothing
        was ever sent for the claim).
        """
        ticket_id = held.claim.ticket_id
        query = f"correlation_id={ticket_id}^ORDERBYsys_created_on"
        loop = asyncio.get_running_loop()
        failure: UpstreamUnavailable | None = None
        posts = 0
        look = look_first
        while True:
            if look:
                found = await self._servicenow.find_one(connection, table, query, RECORD_FIELDS)
                if found is not None:
                    logger.info("Found the %s record of ticket %s by correlation id", table, ticket_id)
                    return found
            look = True
            settling = self._settle_left(held)
            if settling > 0:
                # An earlier create may still commit: no other until it has had the time to.
                if (
                    posts >= self._policy.create_attempts
                    or settling > self._policy.max_retry_wait_s
                    or loop.time() + settling >= deadline
                ):
                    raise UpstreamUnavailable(
                        "ServiceNow did not confirm creating the ticket and has no record of it "
                        "yet. Retry with the same Idempotency-Key after the Retry-After time.",
                        retry_after=math.ceil(settling),
                        ambiguous=True,
                    )
                await self._sleep(settling)
                continue  # and look again
            if posts >= self._policy.create_attempts:
                assert failure is not None
                raise failure
            posts += 1
            try:
                return await self._servicenow.create(
                    connection, table, fields, before_post=lambda: self._before_post(held)
                )
            except UpstreamRejected:
                held.sending, held.refused = None, True  # refused: nothing was made
                raise
            except UpstreamUnavailable as exc:
                failure = exc
                ambiguous = exc.ambiguous and held.sending is not None  # None: the POST never left
                logger.warning(
                    "Creating ticket %s: attempt %d of %d failed (%s; %s)",
                    ticket_id,
                    posts,
                    self._policy.create_attempts,
                    exc.message,
                    "may have been processed" if ambiguous else "not processed",
                )
                if ambiguous:
                    held.unknown_outcome(self._clock())
                    continue  # look it up at once; the settle window decides about another
                held.sending = None
            if posts >= self._policy.create_attempts:
                raise failure
            wait = failure.retry_after if failure.hinted else self._policy.backoff_s * 2 ** (posts - 1)
            if wait > self._policy.max_retry_wait_s or loop.time() + wait >= deadline:
                raise failure
            await self._sleep(wait)

    async def _before_post(self, held: _Held) -> None:
        """Renew the lease and note the POST, immediately before it leaves (the token is at hand).

        Raises:
            IdempotencyKeyInProgress: another request took the claim over; nothing is sent.
        """
        now = self._clock()
        held.claim = await self._renew_lease(held.claim, posted_at=now)
        held.sending = now

    def _settle_left(self, held: _Held) -> float:
        """Seconds until the latest create that may have been processed can no longer commit."""
        if held.maybe_made is None:
            return 0.0
        return (held.maybe_made + self._policy.settle_window - self._clock()).total_seconds()

    async def _keep_claim(self, held: _Held) -> datetime | None:
        """Keep the claim and its ticket id after a failure, so a retry looks before it creates.

        The lease is kept only until a create that may have been processed can no longer commit
        (then a retry may take over); otherwise it is freed. Returns that time, or None.
        """
        settles = None
        if held.maybe_made is not None:
            settles = held.maybe_made + self._policy.settle_window
            if settles <= self._clock():
                settles = None
        update = {"lease_until": settles, "posted_at": held.maybe_made}
        await self._quietly(self._idempotency.replace(held.claim.model_copy(update=update)))
        return settles

    def _retry_when_settled(self, error: UpstreamUnavailable, settles: datetime) -> UpstreamUnavailable:
        """`error` with Retry-After no sooner than a retry can make progress."""
        left = math.ceil((settles - self._clock()).total_seconds())
        return UpstreamUnavailable(
            error.message,
            retry_after=max(error.retry_after, left),
            hinted=error.hinted,
            ambiguous=error.ambiguous,
        )

    def _overdue(self, held: _Held) -> UpstreamUnavailable:
        """The create ran out of time. The claim keeps its lease (a POST may be on the wire)."""
        logger.warning("Creating ticket %s took longer than its deadline", held.claim.ticket_id)
        lease = held.claim.lease_until
        left = math.ceil((lease - self._clock()).total_seconds()) if lease is not None else 1
        return UpstreamUnavailable(
            "ServiceNow is too slow to create the ticket now. Retry with the same Idempotency-Key "
            "after the Retry-After time.",
            retry_after=max(1, left),
            ambiguous=held.sending is not None or held.maybe_made is not None,
        )

    async def _renew_lease(self, claim: IdempotencyRecord, *, posted_at: datetime) -> IdempotencyRecord:
        update = {"lease_until": posted_at + self._policy.lease, "posted_at": posted_at}
        try:
            return await self._idempotency.replace(claim.model_copy(update=update))
        except PreconditionFailed as exc:
            # Another request took over this key (our lease had run out): it owns the create now.
            raise IdempotencyKeyInProgress() from exc

    def _ticket(
        self,
        claim: IdempotencyRecord,
        connection: Connection,
        request: CreateTicket,
        details: _Details,
        record: Record,
    ) -> Ticket:
        now = self._clock()
        priority = _int(record.get("priority"))
        if priority != request.priority:
            # The instance's lookup rules differ from ServiceNow's default matrix; show its answer.
            logger.warning(
                "ServiceNow set priority %s for requested %s", record.get("priority"), request.priority
            )
        return Ticket(
            tenant_id=claim.tenant_id,
            ticket_id=claim.ticket_id,
            type=request.type,
            sys_id=str(record.get("sys_id") or ""),
            number=str(record.get("number") or ""),
            instance_url=connection.instance_url,
            name=details.name,
            description=details.text,
            priority=priority if priority in mapping.IMPACT_URGENCY else request.priority,
            due_date=request.due_date,
            recommendation_source=request.recommendation_source,
            recommendation_category=details.category,
            improvement_action_id=details.action_id,
            created_by=claim.created_by,
            created_by_name=claim.created_by_name,
            created_at=now,
            state=str(record.get("state") or _DEFAULT_STATE[request.type]),
            state_updated_at=now,
            servicenow_updated_on=str(record.get("sys_updated_on") or "") or None,
        )

    async def _store(self, ticket: Ticket) -> Ticket:
        try:
            return await self._tickets.add(ticket)
        except PreconditionFailed:
            existing = await self._tickets.get(ticket.tenant_id, ticket.ticket_id)
            if existing is None:
                raise
            return existing  # a takeover stored it first

    async def _mark_completed(self, claim: IdempotencyRecord) -> None:
        current: IdempotencyRecord | None = claim
        for _ in range(3):
            if current is None or current.status == "completed":
                return
            try:
                await self._idempotency.replace(
                    current.model_copy(update={"status": "completed", "completed_at": self._clock()})
                )
                return
            except PreconditionFailed:
                current = await self._idempotency.get(claim.tenant_id, claim.key_hash)
        # The ticket row exists, and readers treat a claim with a ticket row as completed.
        logger.warning("Could not mark the claim of ticket %s completed", claim.ticket_id)

    async def _quietly(self, write: Awaitable[Any]) -> None:
        """Tidy-up after a failure: the original error is what the caller must see."""
        try:
            await write
        except (AppError, PreconditionFailed):
            logger.warning("Could not update the idempotency claim after a failed create")

    # --- read -----------------------------------------------------------------------------------

    async def list(self, tenant_id: str, query: TicketListQuery) -> TicketPage:
        items, token = await self._tickets.page(
            tenant_id,
            type=query.type,
            state=query.state,
            top=query.top,
            continuation_token=query.continuation_token,
        )
        connection = await self._connections.get(tenant_id)
        return TicketPage(items=[self._view(t, connection) for t in items], continuation_token=token)

    async def get(self, tenant_id: str, ticket_id: str) -> TicketView:
        """One ticket of the tenant. Raises NotFound for unknown ids and other tenants' tickets."""
        ticket = await self._tickets.get(tenant_id, ticket_id)
        if ticket is None:
            raise NotFound("No such ticket.")
        return self._view(ticket, await self._connections.get(tenant_id))

    async def summary(self, tenant_id: str) -> TicketSummary:
        """The two cards: per type, the total and a count per state (every known state, then others)."""
        counts = await self._tickets.count_by_state(tenant_id)
        connection = await self._connections.get(tenant_id)
        names = _state_names(connection)

        def card(table: str) -> TicketTypeSummary:
            seen = [state for (kind, state) in counts if kind == table]
            codes = [*names[table], *sorted(set(seen) - set(names[table]))]
            states = [
                StateCount(state=code, name=names[table].get(code, code), count=counts.get((table, code), 0))
                for code in codes
            ]
            return TicketTypeSummary(total=sum(s.count for s in states), states=states)

        return TicketSummary(incident=card(INCIDENT), change_request=card(CHANGE_REQUEST))

    def _view(self, ticket: Ticket, connection: Connection | None) -> TicketView:
        names = _state_names(connection)
        return TicketView(
            id=ticket.ticket_id,
            type=ticket.type,
            number=ticket.number,
            sys_id=ticket.sys_id,
            url=mapping.record_url(ticket.instance_url, ticket.type, ticket.sys_id),
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
            deleted_in_service_now_at=ticket.deleted_in_servicenow_at,
        )


def _state_names(connection: Connection | None) -> dict[str, dict[str, str]]:
    if connection is None:
        return effective_state_names({})
    return effective_state_names(connection.state_names, connection.instance_state_labels)


def request_fingerprint(request: CreateTicket) -> str:
    """sha256 of the validated request as canonical JSON: equal bodies, equal fingerprints."""
    canonical = json.dumps(
        request.model_dump(mode="json", by_alias=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key_hash(idempotency_key: str | None) -> str:
    """The claim's row key. Without a key, a random one: our own retries are still deduplicated."""
    if idempotency_key is None:
        idempotency_key = secrets.token_urlsafe(32)
    if (
        not 1 <= len(idempotency_key) <= _MAX_KEY_LENGTH
        or not idempotency_key.isprintable()
        or not idempotency_key.isascii()
    ):
        message = f"Idempotency-Key must be 1 to {_MAX_KEY_LENGTH} printable ASCII characters."
        raise BadRequest(message, fields=[{"field": "Idempotency-Key", "message": message}])
    return hashlib.sha256(idempotency_key.encode()).hexdigest()


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
