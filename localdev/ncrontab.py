"""NCRONTAB schedules as the Functions timer trigger reads them.

Six fields, seconds first: `{second} {minute} {hour} {day} {month} {day-of-week}`; five-field
expressions (no seconds) are accepted too, as the host does. Each field takes `*`, a number, a
range `a-b`, a list `a,b`, and steps `*/n` or `a-b/n`. Day names and month names are accepted.
Times are UTC, as on Flex Consumption.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
# (low, high, names) per field, in NCRONTAB order.
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, _MONTHS),
    (0, 6, _DAYS),
)
_SEARCH_LIMIT = timedelta(days=366 * 5)


class InvalidSchedule(ValueError):
    """The expression is not a valid NCRONTAB schedule."""


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    expression: str

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        if len(parts) != 6:
            raise InvalidSchedule(f"{expression!r}: expected 6 fields (or 5), found {len(parts)}")
        sets = [_parse_field(part, *spec, expression) for part, spec in zip(parts, _FIELDS, strict=True)]
        sets[5] = frozenset(7 % 7 if d == 7 else d for d in sets[5])
        seconds, minutes, hours, days, months, weekdays = sets
        return cls(seconds, minutes, hours, days, months, weekdays, expression=expression)

    def matches(self, moment: datetime) -> bool:
        return (
            moment.second in self.seconds
            and moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.day in self.days
            and moment.month in self.months
            and (moment.isoweekday() % 7) in self.weekdays
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first matching second strictly after `moment` (UTC)."""
        candidate = moment.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = candidate + _SEARCH_LIMIT
        while candidate < limit:
            if candidate.month not in self.months:
                candidate = _start_of_next_month(candidate)
            elif candidate.day not in self.days or (candidate.isoweekday() % 7) not in self.weekdays:
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0, second=0)
            elif candidate.minute not in self.minutes:
                candidate = (candidate + timedelta(minutes=1)).replace(second=0)
            elif candidate.second not in self.seconds:
                candidate += timedelta(seconds=1)
            else:
                return candidate
        raise InvalidSchedule(f"{self.expression!r} never fires")


def _start_of_next_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)


def _parse_field(text: str, low: int, high: int, names: dict[str, int], expression: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = _number(step_text, names, expression) if step_text else 1
        if step < 1:
            raise InvalidSchedule(f"{expression!r}: step must be at least 1")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _number(first, names, expression), _number(last, names, expression)
        else:
            start = _number(span, names, expression)
            end = high if step_text else start
        upper = 7 if names is _DAYS else high
        if not (low <= start <= upper and low <= end <= upper and start <= end):
            raise InvalidSchedule(f"{expression!r}: {item!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _number(text: str, names: dict[str, int], expression: str) -> int:
    if text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise InvalidSchedule(f"{expression!r}: {text!r} is not a number")
    return int(text)
