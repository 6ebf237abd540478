"""The claim keeper: one request's hold on an Idempotency-Key, kept in the `idempotency` table.

A claim is taken with a conditional insert before ServiceNow is called. It holds the request's
fingerprint, the ticket id chosen up front and a lease: until `lease_until` only its holder sends
creates. Every later write is ETag-conditional, so a holder whose lease was taken over learns it
at its next write. `posted_at` is when the latest create that ServiceNow may have carried out was
sent; until it is older than the settle window no other create may go, and the claim keeps its
lease that long after a failure (`ticket_creation` tells the whole protocol).

A new claim is written with `posted_at` = now and the whole lease, as if its POST left at once.
Its holder's POST within `post_grace` is covered by that write and needs no other: a warm create
writes the claim once and the ticket row once. Other requests see a `posted_at` no later than
that POST, and cannot take the claim over before its lease ends, 90 s after the claim: past
the POST's end (ServiceNow cancels a transaction after 60 s). A later POST (a slow token, a
retry) renews the lease and `posted_at` first, as a takeover's always does.

A claim whose ticket row is `creating` (answered 202; ServiceNow has not confirmed the record) is
finished by whoever takes its lease over next: the `ticket-creates` worker, or a repeat of the key
that comes after the lease ran out. While the lease is held, a repeat gets the row as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from shared.clock import Clock
from shared.errors import (
    AppError,
    BadRequest,
    IdempotencyKeyInProgress,
    PreconditionFailed,
    UpstreamUnavailable,
)
from shared.identity import Caller
from shared.models import CreateTicket
from shared.ports import IdempotencyClaims, TicketStore
from shared.records import IdempotencyRecord, Ticket
from shared.services.ticket_policy import TicketingPolicy

logger = logging.getLogger(__name__)

_MAX_KEY_LENGTH = 255


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


def request_fingerprint(request: CreateTicket) -> str:
    """sha256 of the validated request as canonical JSON: equal bodies, equal fingerprints."""
    canonical = json.dumps(
        request.model_dump(mode="json", by_alias=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class HeldClaim:
    """A claim whose lease this request holds: the claim as this request last wrote it (its ETag
    moves with every write), and what this request knows about the creates sent for it."""

    def __init__(
        self,
        claim: IdempotencyRecord,
        *,
        store: IdempotencyClaims,
        policy: TicketingPolicy,
        clock: Clock,
        new: bool = False,
    ) -> None:
        self.claim = claim
        # When the latest create that ServiceNow may have carried out was sent; None: there is none.
        # A new claim's `posted_at` only reserves the POST to come: nothing was sent yet.
        self.maybe_made: datetime | None = None if new else claim.posted_at
        # When the POST now on the wire left (set once its lease renewal is written).
        self.sending: datetime | None = None
        # ServiceNow refused the create itself (not a lookup).
        self.refused = False
        # The claim's ticket row, when it was written as `creating` before this request held it.
        self.row: Ticket | None = None
        self._store = store
        self._policy = policy
        self._clock = clock

    @property
    def may_have_made_a_record(self) -> bool:
        """A create of this claim is on the wire, or ended without telling whether it made one."""
        return self.sending is not None or self.maybe_made is not None

    async def before_post(self) -> None:
        """Renew the lease and note the POST, immediately before it leaves (the token is at hand);
        nothing to write when the claim's last write already covers a POST now.

        Raises:
            IdempotencyKeyInProgress: another request took the claim over; nothing is sent.
        """
        now = self._clock.now()
        if self._covers_post(now):
            self.sending = now
            return
        update = {"lease_until": now + self._policy.lease, "posted_at": now}
        try:
            self.claim = await self._store.replace(self.claim.model_copy(update=update))
        except PreconditionFailed as exc:
            # Another request took over this key (our lease had run out): it owns the create now.
            raise IdempotencyKeyInProgress() from exc
        self.sending = now

    def _covers_post(self, now: datetime) -> bool:
        """The claim as last written says a POST may leave until `posted_at` + `post_grace`, and
        holds the lease for long after: nobody can take it over while this POST is out."""
        posted, lease = self.claim.posted_at, self.claim.lease_until
        grace = self._policy.post_grace
        return (
            posted is not None
            and lease is not None
            and now <= posted + grace
            and lease >= now + self._policy.lease - grace
        )

    def post_refused(self) -> None:
        """ServiceNow refused the create itself: it made nothing."""
        self.sending, self.refused = None, True

    def post_failed(self, error: UpstreamUnavailable) -> bool:
        """A POST got no usable answer. True when ServiceNow may have made the record all the same."""
        if error.ambiguous and self.sending is not None:  # sending None: the POST never left
            self.outcome_unknown()
            return True
        self.sending = None
        return False

    def outcome_unknown(self) -> None:
        """The POST on the wire ended without telling whether it made the record.

        The settle window counts from now, not from when the POST was noted: it may have waited
        for a pooled connection after that, so only now is surely after ServiceNow got it.
        """
        if self.sending is not None:
            self.maybe_made = self._clock.now()
            self.sending = None

    def settle_left(self) -> float:
        """Seconds until the latest create that may have been processed can no longer commit."""
        if self.maybe_made is None:
            return 0.0
        return (self.maybe_made + self._policy.settle_window - self._clock.now()).total_seconds()

    async def keep(self) -> datetime | None:
        """Keep the claim and its ticket id after a failure, so a retry looks before it creates.

        The lease is kept only until a create that may have been processed can no longer commit
        (then a retry may take over); otherwise it is freed. Returns that time, or None.
        """
        settles = None
        if self.maybe_made is not None:
            settles = self.maybe_made + self._policy.settle_window
            if settles <= self._clock.now():
                settles = None
        update = {"lease_until": settles, "posted_at": self.maybe_made, "deferred": True}
        kept = await _quietly(self._store.replace(self.claim.model_copy(update=update)))
        if isinstance(kept, IdempotencyRecord):
            self.claim = kept
        return settles

    async def cut_off(self) -> datetime:
        """The deadline ended the create. A POST it had on the wire may still be processed, so the
        settle window counts from now and the claim keeps its lease until then; with nothing sent
        the lease stays as it is. Returns when the lease ends: when a retry can go on."""
        self.outcome_unknown()
        now = self._clock.now()
        if self.maybe_made is None:
            return self.claim.lease_until or now
        return await self.keep() or now

    async def release(self) -> None:
        """Delete the claim: the key is free again (only when no create of it can have made a record)."""
        await _quietly(self._store.release(self.claim))


class ClaimKeeper:
    """Takes, waits for, takes over and completes the claims of Idempotency-Keys."""

    def __init__(
        self, *, claims: IdempotencyClaims, tickets: TicketStore, policy: TicketingPolicy, clock: Clock
    ) -> None:
        self._claims = claims
        self._tickets = tickets
        self._policy = policy
        self._clock = clock

    async def find(self, tenant_id: str, key_hash: str) -> IdempotencyRecord | None:
        return await self._claims.get(tenant_id, key_hash)

    async def claim(
        self, caller: Caller, key_hash: str, fingerprint: str, ticket_id: str
    ) -> HeldClaim | None:
        """A new claim of the key, its lease ours; None when a concurrent request claimed it first."""
        # `posted_at`: the POST to come, within `post_grace` (module docstring).
        record = new_claim(caller, key_hash, fingerprint, ticket_id, self._clock.now(), self._policy.lease)
        try:
            stored = await self._claims.claim(record)
        except PreconditionFailed:
            return None
        return HeldClaim(stored, store=self._claims, policy=self._policy, clock=self._clock, new=True)

    async def await_or_take_over(
        self, claim: IdempotencyRecord, prepare: Callable[[Ticket | None], Awaitable[None]]
    ) -> Ticket | HeldClaim | None:
        """The finished ticket (or the `creating` one, while another holds the lease); or the claim
        with its lease now ours (`row` set when the ticket is `creating`); or None if it was released.

        `prepare` runs with the `creating` row (or None) right before a takeover is tried: what it
        raises (the record's content cannot be had) leaves the lease alone.

        Raises:
            IdempotencyKeyInProgress: the claimant still holds its lease after our wait.
        """
        wait_until = self._clock.now() + timedelta(seconds=self._policy.wait_for_claim_s)
        current: IdempotencyRecord | None = claim
        while current is not None:
            ticket = await self._tickets.get(current.tenant_id, current.ticket_id)
            if ticket is not None and ticket.status != "creating":
                return ticket  # the row is the create's end: a claim stays in progress without harm
            if current.status == "in_progress" and _lease_free(current, self._clock.now()):
                await prepare(ticket)
            taken = await self.take_over(current)
            if taken is not None:
                taken.row = ticket
                return taken
            if ticket is not None:
                return ticket  # creating, and someone holds the lease: nothing to wait for
            now = self._clock.now()
            if current.status == "in_progress" and _lease_free(current, now):
                pass  # another request took it over first: read it again at once
            elif now >= wait_until:
                lease = current.lease_until
                left = _seconds_until(lease, now) if lease is not None else 1
                raise IdempotencyKeyInProgress(retry_after=left)  # when the lease ends
            else:
                await self._clock.sleep(self._policy.poll_interval_s)
            current = await self._claims.get(claim.tenant_id, claim.key_hash)
        return None

    async def take_over(self, claim: IdempotencyRecord) -> HeldClaim | None:
        """The claim with a fresh lease, when it is in progress and its lease free or run out;
        None when it is not, or another request took it over first."""
        now = self._clock.now()
        if claim.status != "in_progress" or not _lease_free(claim, now):
            return None
        try:
            taken = await self._claims.replace(
                claim.model_copy(update={"lease_until": now + self._policy.lease})
            )
        except PreconditionFailed:
            return None  # wait for that one instead
        return self._held(taken)

    async def touch(self, claim: IdempotencyRecord) -> bool:
        """Write the claim unchanged (it counts as written now); False when another wrote it first."""
        try:
            await self._claims.replace(claim)
        except PreconditionFailed:
            return False
        return True

    async def stale(
        self, *, written_before: datetime, created_after: datetime, limit: int
    ) -> list[IdempotencyRecord]:
        """Claims in progress, made after `created_after`, that nobody wrote since `written_before`."""
        return await self._claims.stale_in_progress(
            written_before=written_before, created_after=created_after, limit=limit
        )

    async def mark_completed(self, claim: IdempotencyRecord) -> None:
        current: IdempotencyRecord | None = claim
        for _ in range(3):
            if current is None or current.status == "completed":
                return
            try:
                await self._claims.replace(
                    current.model_copy(update={"status": "completed", "completed_at": self._clock.now()})
                )
                return
            except PreconditionFailed:
                current = await self._claims.get(claim.tenant_id, claim.key_hash)
        # The ticket row exists, and readers treat a claim with a ticket row as completed.
        logger.warning("Could not mark the claim of ticket %s completed", claim.ticket_id)

    def _held(self, claim: IdempotencyRecord) -> HeldClaim:
        return HeldClaim(claim, store=self._claims, policy=self._policy, clock=self._clock)


def new_claim(
    caller: Caller, key_hash: str, fingerprint: str, ticket_id: str, now: datetime, lease: timedelta
) -> IdempotencyRecord:
    """A claim in progress made by `caller` now, its lease ours for `lease`, with `posted_at` = now:
    the request it guards goes out right after this claim is written."""
    return IdempotencyRecord(
        tenant_id=caller.tenant_id,
        key_hash=key_hash,
        fingerprint=fingerprint,
        ticket_id=ticket_id,
        status="in_progress",
        created_by=caller.user_id,
        created_by_name=caller.name,
        created_at=now,
        lease_until=now + lease,
        posted_at=now,
    )


def _lease_free(claim: IdempotencyRecord, now: datetime) -> bool:
    return claim.lease_until is None or claim.lease_until <= now


def _seconds_until(instant: datetime, now: datetime) -> int:
    return math.ceil((instant - now).total_seconds())


async def _quietly(write: Awaitable[object]) -> object:
    """Tidy-up after a failure: the original error is what the caller must see. What the write
    returned, or None when it failed."""
    try:
        return await write
    except AppError:
        logger.warning("Could not update the idempotency claim after a failed create")
        return None
