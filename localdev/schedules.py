"""NCRONTAB timer schedules, read as the Functions host reads them, on croniter instead of our own parser.

NCRONTAB puts seconds first, ANDs day-of-month with day-of-week and has none of croniter's extensions
(`L`, `W`, `#`, `?`, `H`, `@daily`, years, wrapping ranges), so this module adapts and polices croniter to
match. Five fields (no seconds) are accepted, as the host does. Times are UTC. `%SETTING%` is resolved by
the caller, `localdev.functions_index.resolve_setting`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import CroniterBadDateError, CroniterError, croniter

_ITEM = re.compile(r"\*(/\d+)?|(?P<first>\d+|[a-z]{3})(-(?P<last>\d+|[a-z]{3}))?(/\d+)?", re.IGNORECASE)
_NAMES = {
    **{d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
    **{m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun"], start=1)},
    **{m: i for i, m in enumerate(["jul", "aug", "sep", "oct", "nov", "dec"], start=7)},
}


class InvalidSchedule(ValueError):
    """The expression is not a valid NCRONTAB schedule."""


@dataclass(frozen=True)
class Schedule:
    expression: str

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        fields = expression.split()
        if len(fields) not in (5, 6):
            raise InvalidSchedule(f"{expression!r}: expected 6 fields (or 5), found {len(fields)}")
        for item in (item for field in fields for item in field.split(",")):
            match = _ITEM.fullmatch(item)
            if match is None:
                raise InvalidSchedule(f"{expression!r}: {item!r} is not NCRONTAB syntax")
            if match["last"] and _rank(match["first"]) > _rank(match["last"]) >= 0:
                raise InvalidSchedule(f"{expression!r}: {item!r} runs backwards")
        schedule = cls(expression)
        schedule._croniter(datetime.now(UTC))  # validates fields, ranges and names
        return schedule

    def next_after(self, moment: datetime) -> datetime:
        """The first matching second strictly after `moment` (UTC)."""
        try:
            return self._croniter(moment.astimezone(UTC)).get_next(datetime)
        except CroniterBadDateError as error:
            raise InvalidSchedule(f"{self.expression!r} never fires") from error

    def _croniter(self, start: datetime) -> croniter[datetime]:
        fields = self.expression.split()
        try:
            return croniter(
                " ".join(["0", *fields] if len(fields) == 5 else fields),
                start,
                ret_type=datetime,
                day_or=False,
                second_at_beginning=True,
            )
        except CroniterError as error:
            raise InvalidSchedule(f"{self.expression!r}: {error}") from error


def _rank(value: str) -> int:
    return int(value) if value.isdigit() else _NAMES.get(value.lower(), -1)
