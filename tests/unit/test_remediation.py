"""The remediation rules: a control's status from Secure Score, the check record that carries the
first completion, and the flags against the ticket's state."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.remediation import (
    DEFAULT_GRACE,
    Remediation,
    RemediationFlags,
    RemediationStatus,
    next_remediation,
    remediation_flags,
    remediation_status,
)

S = RemediationStatus
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("score", "max_score", "state", "deprecated", "expected"),
    [
        (10.0, 10.0, None, False, S.COMPLETED),
        (10.0, 10.0, "Default", False, S.COMPLETED),
        (12.0, 10.0, None, False, S.COMPLETED),  # more than the maximum counts as full
        (9.9999999999, 10.0, None, False, S.COMPLETED),  # floating-point partial credit
        (10.0, 10.0, "ThirdParty", False, S.RESOLVED_BY_EXCEPTION),
        (10.0, 10.0, "Reviewed", False, S.RESOLVED_BY_EXCEPTION),
        (10.0, 10.0, "Ignored", False, S.RESOLVED_BY_EXCEPTION),
        (10.0, 10.0, "thirdParty", False, S.RESOLVED_BY_EXCEPTION),  # the state's case does not matter
        (5.0, 10.0, None, False, S.IN_PROGRESS),
        (0.0, 10.0, None, False, S.IN_PROGRESS),
        (9.99, 10.0, "ThirdParty", False, S.IN_PROGRESS),  # the points have not been awarded yet
        (None, 10.0, None, False, S.UNKNOWN),  # no entry in controlScores
        (-1.0, 10.0, None, False, S.UNKNOWN),
        (math.nan, 10.0, None, False, S.UNKNOWN),
        (math.inf, 10.0, None, False, S.UNKNOWN),
        (5.0, None, None, False, S.UNKNOWN),
        (5.0, math.nan, None, False, S.UNKNOWN),
        (5.0, -10.0, None, False, S.UNKNOWN),
        (0.0, 0.0, None, False, S.UNKNOWN),  # a 0-point control proves nothing
        (10.0, 10.0, None, True, S.NOT_APPLICABLE),
        (None, 10.0, "ThirdParty", True, S.NOT_APPLICABLE),
        (math.nan, None, None, True, S.NOT_APPLICABLE),
    ],
)
def test_status_from_points_state_and_deprecation(
    score: float | None, max_score: float | None, state: str | None, deprecated: bool, expected: S
) -> None:
    assert remediation_status(score, max_score, state, deprecated) is expected


def check(previous: Remediation | None, status: S, at: datetime, score: float = 5.0) -> Remediation:
    return next_remediation(previous, status, score, 10.0, at)


def test_the_first_completion_is_recorded_and_kept() -> None:
    started = check(None, S.IN_PROGRESS, T0)
    done = check(started, S.COMPLETED, T0 + timedelta(days=1), score=10.0)
    still = check(done, S.COMPLETED, T0 + timedelta(days=2), score=10.0)

    assert started.completed_at is None
    assert done.completed_at == still.completed_at == T0 + timedelta(days=1)
    assert (still.status, still.score, still.max_score, still.checked_at) == (
        S.COMPLETED,
        10.0,
        10.0,
        T0 + timedelta(days=2),
    )


def test_the_first_completion_survives_a_regression_and_a_second_completion() -> None:
    done = check(None, S.COMPLETED, T0, score=10.0)
    lost = check(done, S.IN_PROGRESS, T0 + timedelta(days=1))
    again = check(lost, S.COMPLETED, T0 + timedelta(days=2), score=10.0)

    assert done.completed_at == lost.completed_at == again.completed_at == T0


@pytest.mark.parametrize("status", [S.RESOLVED_BY_EXCEPTION, S.UNKNOWN, S.NOT_APPLICABLE, S.IN_PROGRESS])
def test_only_completed_sets_the_completion_time(status: S) -> None:
    assert check(None, status, T0).completed_at is None


def test_a_completed_check_without_a_completion_time_completed_when_it_was_checked() -> None:
    old = Remediation(status=S.COMPLETED, score=10.0, max_score=10.0, checked_at=T0)

    assert check(old, S.IN_PROGRESS, T0 + timedelta(days=1)).completed_at == T0


def test_an_unusable_score_is_stored_as_none() -> None:
    bad = next_remediation(None, S.UNKNOWN, math.nan, -1.0, T0)

    assert (bad.score, bad.max_score) == (None, None)


def test_a_check_is_frozen_and_needs_an_aware_time() -> None:
    done = check(None, S.COMPLETED, T0)
    with pytest.raises(ValidationError):
        done.status = S.IN_PROGRESS  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Remediation(status=S.COMPLETED, score=1.0, max_score=1.0, checked_at=datetime(2026, 1, 1))


def flags(
    previous: Remediation | None,
    status: S,
    at: datetime,
    *,
    closed: bool,
    closed_at: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
) -> RemediationFlags:
    current = check(previous, status, at)
    return remediation_flags(previous, current, ticket_closed=closed, closed_at=closed_at, grace=grace)


NONE = RemediationFlags(closed_without_remediation=False, remediated_while_open=False, regressed=False)


@pytest.mark.parametrize(
    ("after_closing", "flagged"),
    [
        (timedelta(days=7) - timedelta(seconds=1), False),
        (timedelta(days=7), False),  # exactly the grace period: still within it
        (timedelta(days=7) + timedelta(seconds=1), True),
        (timedelta(days=30), True),
    ],
)
def test_a_closed_ticket_is_flagged_only_after_the_grace_period(
    after_closing: timedelta, flagged: bool
) -> None:
    found = flags(None, S.IN_PROGRESS, T0 + after_closing, closed=True, closed_at=T0)

    assert found == RemediationFlags(
        closed_without_remediation=flagged, remediated_while_open=False, regressed=False
    )


def test_the_grace_period_can_be_set() -> None:
    at = T0 + timedelta(days=2)

    assert flags(
        None, S.IN_PROGRESS, at, closed=True, closed_at=T0, grace=timedelta(days=1)
    ).closed_without_remediation
    assert not flags(None, S.IN_PROGRESS, at, closed=True, closed_at=T0).closed_without_remediation


@pytest.mark.parametrize("status", [S.COMPLETED, S.RESOLVED_BY_EXCEPTION, S.UNKNOWN, S.NOT_APPLICABLE])
def test_a_closed_ticket_is_not_flagged_unless_the_control_is_in_progress(status: S) -> None:
    assert flags(None, status, T0 + timedelta(days=30), closed=True, closed_at=T0) == NONE


def test_a_closed_ticket_without_its_closing_time_is_not_flagged() -> None:
    assert flags(None, S.IN_PROGRESS, T0 + timedelta(days=30), closed=True, closed_at=None) == NONE


def test_an_open_ticket_is_never_closed_without_remediation() -> None:
    # A closing time left over from an earlier closure does not count once the ticket is reopened.
    assert flags(None, S.IN_PROGRESS, T0 + timedelta(days=30), closed=False, closed_at=T0) == NONE


@pytest.mark.parametrize(
    ("status", "closed", "expected"),
    [
        (S.COMPLETED, False, True),
        (S.COMPLETED, True, False),
        (S.RESOLVED_BY_EXCEPTION, False, False),
        (S.IN_PROGRESS, False, False),
        (S.UNKNOWN, False, False),
    ],
)
def test_remediated_while_open(status: S, closed: bool, expected: bool) -> None:
    found = flags(None, status, T0, closed=closed, closed_at=T0 if closed else None)

    assert found.remediated_while_open is expected


def test_losing_points_after_completion_is_a_regression_until_completed_again() -> None:
    done = check(None, S.COMPLETED, T0, score=10.0)
    lost = check(done, S.IN_PROGRESS, T0 + timedelta(days=1))

    assert flags(done, S.IN_PROGRESS, T0 + timedelta(days=1), closed=False).regressed
    assert flags(lost, S.IN_PROGRESS, T0 + timedelta(days=2), closed=False).regressed  # still
    assert not flags(lost, S.COMPLETED, T0 + timedelta(days=2), closed=False).regressed


def test_a_regression_after_closing_is_both_flags() -> None:
    done = check(None, S.COMPLETED, T0, score=10.0)

    found = flags(done, S.IN_PROGRESS, T0 + timedelta(days=9), closed=True, closed_at=T0 + timedelta(hours=1))

    assert found == RemediationFlags(
        closed_without_remediation=True, remediated_while_open=False, regressed=True
    )


@pytest.mark.parametrize(
    "previous",
    [
        None,
        check(None, S.IN_PROGRESS, T0),
        check(None, S.RESOLVED_BY_EXCEPTION, T0),
        check(None, S.UNKNOWN, T0),
    ],
)
def test_no_regression_without_an_earlier_completion(previous: Remediation | None) -> None:
    assert not flags(previous, S.IN_PROGRESS, T0 + timedelta(days=1), closed=False).regressed


def test_a_completed_check_without_its_time_counts_as_an_earlier_completion() -> None:
    old = Remediation(status=S.COMPLETED, score=10.0, max_score=10.0, checked_at=T0)

    assert flags(old, S.IN_PROGRESS, T0 + timedelta(days=1), closed=False).regressed


@pytest.mark.parametrize("status", [S.UNKNOWN, S.NOT_APPLICABLE, S.RESOLVED_BY_EXCEPTION])
def test_only_in_progress_after_completion_is_a_regression(status: S) -> None:
    done = check(None, S.COMPLETED, T0, score=10.0)

    assert not flags(done, status, T0 + timedelta(days=1), closed=False).regressed
