"""The NCRONTAB semantics the local host relies on, pinned against the croniter-based `Schedule`."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from localdev.functions_index import UnsupportedFunction, resolve_setting
from localdev.schedules import InvalidSchedule, Schedule


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
        ("0 5/15 * * * *", at(2026, 1, 1, 0, 6, 0), at(2026, 1, 1, 0, 20, 0)),
        ("0 0 0 29 Feb *", at(2026, 3, 1, 0, 0, 0), at(2028, 2, 29, 0, 0, 0)),
    ],
)
def test_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(after) == expected


def test_six_fields_put_seconds_first() -> None:
    # Unix-style six-field cron (croniter's default) would read `30` as the minute and `5` as seconds.
    assert Schedule.parse("30 5 * * * *").next_after(at(2026, 1, 1)) == at(2026, 1, 1, 0, 5, 30)


def test_five_fields_have_no_seconds_and_fire_on_second_zero() -> None:
    schedule = Schedule.parse("*/15 * * * *")
    assert schedule.next_after(at(2026, 1, 1, 0, 1, 0)) == at(2026, 1, 1, 0, 15, 0)
    assert schedule.next_after(at(2026, 1, 1, 0, 15, 0)) == at(2026, 1, 1, 0, 30, 0)


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # NCRONTAB ANDs the two day fields: Friday the 13th, not every 13th plus every Friday (Unix cron).
    schedule = Schedule.parse("0 0 0 13 * Fri")
    assert schedule.next_after(at(2026, 1, 1)) == at(2026, 2, 13)
    assert schedule.next_after(at(2026, 2, 13)) == at(2026, 3, 13)
    assert schedule.next_after(at(2026, 3, 13)) == at(2026, 11, 13)


def test_times_are_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    after = datetime(2026, 1, 1, 1, 0, 0, tzinfo=plus_two)  # 23:00 UTC the day before
    assert Schedule.parse("0 0 0 * * *").next_after(after) == at(2026, 1, 1)


def test_next_is_strictly_after_and_ignores_microseconds() -> None:
    schedule = Schedule.parse("* * * * * *")
    ten = at(2026, 1, 1, 0, 0, 10)
    assert schedule.next_after(ten) == at(2026, 1, 1, 0, 0, 11)
    assert schedule.next_after(ten.replace(microsecond=500_000)) == at(2026, 1, 1, 0, 0, 11)


def test_the_every_second_trap_is_every_second() -> None:
    # `* */15 * * * *` fires every second of every 15th minute (host issue 10581), not every 15 min.
    schedule = Schedule.parse("* */15 * * * *")
    assert schedule.next_after(at(2026, 1, 1, 0, 15, 0)) == at(2026, 1, 1, 0, 15, 1)


def test_setting_references_are_resolved_before_parsing() -> None:
    expression = resolve_setting("%SYNC_SCHEDULE%", {"SYNC_SCHEDULE": "0 */5 * * * *"})
    assert Schedule.parse(expression).next_after(at(2026, 1, 1, 0, 3, 7)) == at(2026, 1, 1, 0, 5, 0)
    with pytest.raises(UnsupportedFunction, match="SYNC_SCHEDULE"):
        resolve_setting("%SYNC_SCHEDULE%", {})
    with pytest.raises(InvalidSchedule):
        Schedule.parse("%SYNC_SCHEDULE%")


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * *",
        "61 * * * * *",
        "0 0 25 * * *",
        "*/0 * * * * *",
        "x * * * * *",
        "0 0 0 0 * *",
        "0 0 0 * 13 *",
        "0 0 0 * * 8",
        "0 0 0 * * Monday",
        "0 0 0 1 Mon *",
        "0 0 22-2 * * *",  # croniter would wrap around midnight
        "0 0 0 1 1 * 2027",  # croniter's year field
        "0 0 0 ? * *",
        "0 0 0 L * *",
        "0 0 0 15W * *",
        "0 0 0 * * 1#2",
        "H * * * * *",
        "R * * * * *",
        "@daily",
    ],
)
def test_invalid_expressions_are_rejected(expression: str) -> None:
    with pytest.raises(InvalidSchedule):
        Schedule.parse(expression)


def test_a_schedule_that_never_fires_says_so() -> None:
    schedule = Schedule.parse("0 0 0 30 Feb *")
    with pytest.raises(InvalidSchedule, match="never fires"):
        schedule.next_after(at(2026, 1, 1))
