"""The sync's numbers: page sizes, margins, intervals (what each is for: the policy in `syncing.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shared.ticket_states import TICKET_TABLES


@dataclass(frozen=True)
class SyncConfig:
    page_size: int = 1000
    # The most records one request asks for (the Table API client's cap). A next page asks for
    # page_size plus the records of the boundary second it will see again, up to this.
    max_page_size: int = 1000
    refresh_within: timedelta = timedelta(minutes=10)
    reconcile_every: timedelta = timedelta(days=1)
    # Re-read this far below the watermark: a record committed late (its transaction began before
    # our last read) carries an older sys_updated_on than records we already saw.
    look_back: timedelta = timedelta(minutes=2)
    # A Retry-After longer than this (the longest the ServiceNow client waits by itself) is not
    # left to the host's retries, 10 s apart: the tenant is not synced again before it has passed.
    max_retry_after: timedelta = timedelta(seconds=30)
    # A lease outlives the longest run the host allows (host.json functionTimeout, 10 minutes).
    lease: timedelta = timedelta(minutes=10)
    # Tickets younger than this are not judged missing: their record may be newer than the listing.
    deletion_grace: timedelta = timedelta(minutes=5)
    # The timer deletes OAuth states that expired this long ago, at most `state_purge_limit` a run.
    state_retention: timedelta = timedelta(days=1)
    state_purge_limit: int = 1000
    # The timer's fan-out sends nothing after this, and cuts a send still out then, so a queue
    # outage (each send held by the SDK's own retries) cannot hold the run into the next period;
    # the next run queues whom this one could not. Below the timer's period (5 minutes).
    fanout_deadline: timedelta = timedelta(minutes=4)
    tables: tuple[str, ...] = TICKET_TABLES
