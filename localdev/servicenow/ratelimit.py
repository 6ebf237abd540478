"""A single-user requests-per-hour rule on the Table API (facts L130-137).

Windows are whole clock hours (reset at the top of the hour, read from the simulator clock, so a
test can advance past the reset). Counting is exact; the real instance commits counts every 30 s
and can let a few extra requests through (facts L132), which a client must not rely on anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .clock import Clock

RULE_SYS_ID = "5b7a3c1e0f2b4a6c8d9e1f2a3b4c5d6e"  # sys_id of the simulated sys_rate_limit_rules row
_HOUR = 3600


@dataclass(frozen=True)
class RateDecision:
    """The outcome for one request: headers always, and whether it may proceed."""

    allowed: bool
    limit: int
    reset_at: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` on every request the rule matches, plus ``Retry-After`` on a denial."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Reset": str(self.reset_at),
            "X-RateLimit-Rule": RULE_SYS_ID,
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    """Counts requests per user per clock hour; ``per_hour=None`` means no rule is configured."""

    def __init__(self, clock: Clock, per_hour: int | None = None) -> None:
        self._clock = clock
        self.per_hour = per_hour
        self._counts: dict[tuple[str, int], int] = {}

    def reset(self) -> None:
        self._counts.clear()

    def check(self, user_key: str) -> RateDecision | None:
        """Count one request for ``user_key``; None when no rule applies."""
        if self.per_hour is None:
            return None
        now = self._clock.timestamp()
        window = int(now // _HOUR)
        reset_at = (window + 1) * _HOUR
        key = (user_key, window)
        used = self._counts.get(key, 0)
        if used >= self.per_hour:
            return RateDecision(False, self.per_hour, reset_at, max(1, math.ceil(reset_at - now)))
        self._counts[key] = used + 1
        return RateDecision(True, self.per_hour, reset_at, 0)
