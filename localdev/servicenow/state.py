"""One simulated instance: everything a test may want to seed, inspect or reset."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .clock import Clock
from .faults import FaultPlan
from .oauth import Grant, OAuthServer
from .push import BusinessRulePlayer
from .ratelimit import RateLimiter
from .records import RecordStore


class SimulatorState:
    """The in-memory instance. Separate objects are separate instances (one per tenant)."""

    def __init__(
        self, *, clients: Mapping[str, str] | None = None, rate_limit_per_hour: int | None = None
    ) -> None:
        self.clock = Clock()
        self.records = RecordStore(self.clock)
        self.push = BusinessRulePlayer(self.clock)  # the connector's push rule, once configured
        self.records.on_write = self.push.on_write
        self.oauth = OAuthServer(self.clock, clients)
        self.rate_limiter = RateLimiter(self.clock, rate_limit_per_hour)
        self.faults = FaultPlan()
        self.requests: Counter[str] = Counter()
        # Tables the integration user may not read: lists answer 200 [] and single records 404, as
        # sys_journal_field's own read ACL does to an account that can read incidents (facts A7).
        self.unreadable: set[str] = set()
        # Set on shutdown so held ("timeout") responses give up at once instead of stalling it.
        self.closing = asyncio.Event()

    def reset(self, *, keep_oauth: bool = False) -> None:
        """Fresh instance: records, counters, faults, stats, rate windows, clock offset and read ACLs.

        Registered clients and the configured rate-limit rule stay; tokens stay only if asked.
        """
        self.clock.reset()
        self.records.reset()
        if not keep_oauth:
            self.oauth.reset()
        self.rate_limiter.reset()
        self.faults.reset()
        self.requests.clear()
        self.unreadable.clear()
        self.push.reset()

    def seed(self, table: str, count: int, template: Mapping[str, Any]) -> list[dict[str, str]]:
        """Insert ``count`` records quickly, bypassing HTTP (benchmarks need 50 x 1,000 tickets).

        Template string values may contain ``{n}`` (1-based index); a list value is cycled
        through, e.g. ``{"state": ["1", "2", "6"]}``.
        """
        created = []
        for n in range(1, count + 1):
            values: dict[str, Any] = {}
            for name, value in template.items():
                chosen = value[(n - 1) % len(value)] if isinstance(value, list) and value else value
                values[name] = chosen.replace("{n}", str(n)) if isinstance(chosen, str) else chosen
            created.append(self.records.insert(table, values, user="admin"))
        return created

    async def hold(self, seconds: float) -> None:
        """Wait ``seconds`` of real time, or less if the simulator is shutting down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), timeout=seconds)


STATE_KEY = web.AppKey("servicenow_state", SimulatorState)
GRANT_KEY = web.RequestKey("servicenow_grant", Grant)  # the authenticated grant of an /api/ call
