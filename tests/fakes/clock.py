"""A `shared.clock.Clock` whose time moves only when a test says so, or when something sleeps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from shared.clock import Clock

START = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = START) -> None:
        self.current = start
        self.slept: list[float] = []  # every wait asked for, in order

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.current += timedelta(seconds=seconds)
        await asyncio.sleep(0)  # still a suspension point, as a real wait is

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


def _conforms(clock: FakeClock) -> Clock:
    return clock
