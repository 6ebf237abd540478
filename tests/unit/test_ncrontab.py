from datetime import UTC, datetime

import pytest

from localdev.ncrontab import InvalidSchedule, Schedule


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", at(2026, 1, 1, 0, 3, 7), at(2026, 1, 1, 0, 5, 0)),
        ("0 */5 * * * *", at(2026, 1, 1, 0, 5, 0), at(2026, 1, 1, 0, 10, 0)),
        ("*/10 * * * * *", at(2026, 1, 1, 0, 0, 9), at(2026, 1, 1, 0, 0, 10)),
        ("0 30 9 * * Mon-Fri", at(2026, 11, 28, 10, 0, 0), at(2026, 11, 30, 9, 30, 0)),
        ("0 0 0 1 Jan *", at(2026, 3, 1, 0, 0, 0), at(2027, 1, 1, 0, 0, 0)),
        ("0 0 12 * * 0", at(2026, 11, 28, 0, 0, 0), at(2026, 11, 29, 12, 0, 0)),
        ("0 0 12 * * 7", at(2026, 11, 28, 0, 0, 0), at(2026, 11, 29, 12, 0, 0)),
        ("5,35 * * * * *", at(2026, 1, 1, 0, 0, 6), at(2026, 1, 1, 0, 0, 35)),
        ("*/15 * * * *", at(2026, 1, 1, 0, 1, 0), at(2026, 1, 1, 0, 15, 0)),  # five fields: no seconds
        ("0 0 0 29 Feb *", at(2026, 3, 1, 0, 0, 0), at(2028, 2, 29, 0, 0, 0)),
    ],
)
def test_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(after) == expected


def test_the_every_second_trap_is_every_second() -> None:
    # `* */15 * * * *` fires every second of every 15th minute (host issue 10581), not every 15 min.
    schedule = Schedule.parse("* */15 * * * *")
    assert schedule.next_after(at(2026, 1, 1, 0, 15, 0)) == at(2026, 1, 1, 0, 15, 1)


@pytest.mark.parametrize(
    "expression", ["", "* * *", "61 * * * * *", "0 0 25 * * *", "*/0 * * * * *", "x * * * * *"]
)
def test_invalid_expressions_are_rejected(expression: str) -> None:
    with pytest.raises(InvalidSchedule):
        Schedule.parse(expression)
