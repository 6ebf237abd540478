"""The one source of time: wall-clock instants for records and deadlines, and waiting.

Services take a `Clock` instead of calling `datetime.now`, `time.monotonic` or `asyncio.sleep`
themselves, so a unit test drives time (a fake whose `sleep` advances `now`) rather than switching
waits off. Deadlines are wall-clock instants: a worker lives minutes, and Azure hosts keep their
clocks NTP-synchronised, so the difference from a monotonic clock does not matter here.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (nothing for zero or less)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
