"""How hard a ticket create tries, and how one request's claim on an Idempotency-Key is shared."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


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
    # A create ServiceNow has not confirmed is answered 202 and finished by the `ticket-creates`
    # worker, one round per settle window; the last round only looks (no create can still commit
    # then), and a record still not found makes the ticket `failed`.
    completion_rounds: int = 5
    # A completed claim keeps its key bound to its ticket this long, then the timer deletes it (at
    # most `claim_purge_limit` a run) and the key is new again.
    claim_retention: timedelta = timedelta(days=7)
    claim_purge_limit: int = 1000

    def __post_init__(self) -> None:
        if self.create_attempts < 1:
            raise ValueError("create_attempts must be at least 1")
        if self.completion_rounds < 1:
            raise ValueError("completion_rounds must be at least 1")
        if self.lease < self.settle_window:
            raise ValueError("lease must be at least settle_window")
