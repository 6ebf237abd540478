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
    # A new claim is written with `posted_at` = its own time, so a POST its holder sends within
    # this long needs no second write. Nobody takes the claim over before its lease ends, by
    # when that POST (sent by `post_grace`, cancelled by ServiceNow 60 s later) has ended.
    post_grace: timedelta = timedelta(seconds=2)
    wait_for_claim_s: float = 10.0  # a repeat waits this long for a concurrent create to finish
    poll_interval_s: float = 0.1
    # A create ServiceNow has not confirmed is answered 202 and finished by the `ticket-creates`
    # worker, one round per settle window; the last round only looks (no create can still commit
    # then), and a record still not found makes the ticket `failed`.
    completion_rounds: int = 5
    # A rotated client secret leaves the connection `pending_authorization` until an admin
    # consents. A `creating` ticket on the same instance and client waits for that (its message
    # comes back every `consent_poll`) until `consent_wait` after it was made, then fails.
    consent_poll: timedelta = timedelta(minutes=5)
    consent_wait: timedelta = timedelta(hours=24)
    # A lost `ticket-creates` message (a queue fault, a worker that failed until the poison queue)
    # would leave its ticket `creating`: the timer queues it again once nobody wrote its claim for
    # `sweep_after` (longer than any wait between two rounds), for claims made within
    # `sweep_horizon`, at most `sweep_limit` claims a run.
    sweep_after: timedelta = timedelta(minutes=10)
    sweep_horizon: timedelta = timedelta(days=2)
    sweep_limit: int = 100
    # A claim keeps its key bound to its ticket this long after it was made, then the timer deletes
    # it (at most `claim_purge_limit` a run) and the key is new again. Longer than `sweep_horizon`:
    # no create of a claim is still going on by then.
    claim_retention: timedelta = timedelta(days=7)
    claim_purge_limit: int = 1000

    def __post_init__(self) -> None:
        if self.create_attempts < 1:
            raise ValueError("create_attempts must be at least 1")
        if self.completion_rounds < 1:
            raise ValueError("completion_rounds must be at least 1")
        if self.lease < self.settle_window:
            raise ValueError("lease must be at least settle_window")
        if self.sweep_after <= max(self.lease, self.consent_poll):
            raise ValueError("sweep_after must exceed lease and consent_poll")
        if self.sweep_horizon <= self.consent_wait:
            raise ValueError("sweep_horizon must exceed consent_wait")
        if self.claim_retention <= self.sweep_horizon:
            raise ValueError("claim_retention must exceed sweep_horizon")
        if self.post_grace >= self.lease:
            raise ValueError("post_grace must be shorter than lease")
