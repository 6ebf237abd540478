"""A wall clock that tests can move forward.

Token lifespans (30 min, 100 days), authorization-code expiry, rate-limit windows and record
timestamps all read this clock, so a test can advance it instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

GLIDE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def format_glide(moment: datetime) -> str:
    """Render a moment as ServiceNow stores date-times: UTC ``YYYY-MM-DD HH:MM:SS`` (facts L111)."""
    return moment.astimezone(UTC).strftime(GLIDE_DATETIME_FORMAT)


class Clock:
    """Real UTC time plus an offset that only ever grows (time does not run backwards)."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._frozen_at: datetime | None = None

    def now(self) -> datetime:
        return (self._frozen_at or datetime.now(UTC)) + self._offset

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def freeze(self, frozen: bool) -> None:
        """Stop time (for tests that need several things to happen in one second), or let it run
        again: it then catches up with the real time that passed, so it never moves back."""
        if frozen and self._frozen_at is None:
            self._frozen_at = datetime.now(UTC)
        elif not frozen:
            self._frozen_at = None

    def timestamp(self) -> float:
        return self.now().timestamp()

    @property
    def offset_seconds(self) -> float:
        return self._offset.total_seconds()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        self._offset = timedelta(0)
        self._frozen_at = None
