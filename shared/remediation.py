"""Whether the improvement action a ticket was made for actually got done, as Secure Score sees it,
and the flags that set that against the ticket's own state.

Secure Score's evidence is a control's points: "completed" means all of the control's points
(`score >= maxScore`), and the portal's third-party and alternate-mitigation statuses award those
points too, without any technical change (reference/next-features-facts.md B3, B4). A control has
no top-level state; its state is the newest `controlStateUpdates` entry (B2), which
`shared.secure_score` reads as `ImprovementAction.control_state`. Points appear 24 to 48 hours
after a change, sometimes days, which is why a closed ticket gets a grace period before it is
flagged.

Pure rules: no I/O, no clock; the caller passes every instant. Also the few columns of a ticket row
the daily check reads and writes (`RemediationRow`, `RemediationChange`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, TypeGuard

from pydantic import AwareDatetime, BaseModel, ConfigDict

# How long after a ticket closes the points may take to appear before the closure is flagged:
# Microsoft says 24-48 hours, administrators report up to 7 days.
DEFAULT_GRACE = timedelta(days=7)
# The control states with which Secure Score may award full points without a technical fix: the
# portal's "resolved through third party" and "alternate mitigation" award them (B3). Which Graph
# state is which portal status is not documented, so `Ignored` (likely "risk accepted", which
# awards none) is counted too: with it, full points cannot be taken as proof of a fix either.
EXCEPTION_STATES = frozenset({"thirdparty", "reviewed", "ignored"})
# The work note saying the action looks done: `sending` before its PATCH, `sent` once it is there.
WorkNoteState = Literal["sending", "sent"]


class RemediationStatus(StrEnum):
    COMPLETED = "completed"  # all the points, and no state that awards them without a fix
    RESOLVED_BY_EXCEPTION = "resolved_by_exception"  # all the points through an exception state
    IN_PROGRESS = "in_progress"  # fewer points than the control is worth
    UNKNOWN = "unknown"  # Secure Score gives no usable evidence either way
    NOT_APPLICABLE = "not_applicable"  # Microsoft deprecated the control


def remediation_status(
    score: float | None, max_score: float | None, latest_state: str | None, deprecated: bool
) -> RemediationStatus:
    """The status of one control from its current points (None when `controlScores` has no entry
    for it), the profile's `maxScore`, the newest `controlStateUpdates` state and `deprecated`.

    Edges: a deprecated control is not applicable whatever its points. A score or `maxScore` that
    is missing, negative or not finite came from a bad or partial payload: unknown, not "not done".
    A control worth 0 points is unknown too, since any score reaches its maximum and so proves
    nothing. A score above `maxScore` (the API and the portal disagree at times) counts as full.
    """
    if deprecated:
        return RemediationStatus.NOT_APPLICABLE
    if not _usable(score) or not _usable(max_score) or max_score == 0:
        return RemediationStatus.UNKNOWN
    if not _full_points(score, max_score):
        return RemediationStatus.IN_PROGRESS
    if latest_state is not None and latest_state.strip().lower() in EXCEPTION_STATES:
        return RemediationStatus.RESOLVED_BY_EXCEPTION
    return RemediationStatus.COMPLETED


def _usable(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value) and value >= 0


def _full_points(score: float, max_score: float) -> bool:
    # Partial credit ("X of Y users") is computed in floating point, so 9.999999999 of 10 is full.
    return score >= max_score or math.isclose(score, max_score, rel_tol=1e-9, abs_tol=1e-9)


class Remediation(BaseModel):
    """What one check of a control found. `completed_at` is when a check first saw it completed;
    it is kept after a regression (the `regressed` flag reports the loss), so it always says when
    the work was first seen done, and a later completion does not pass for the first."""

    model_config = ConfigDict(frozen=True)

    status: RemediationStatus
    score: float | None
    max_score: float | None
    checked_at: AwareDatetime
    completed_at: AwareDatetime | None = None


def next_remediation(
    previous: Remediation | None,
    status: RemediationStatus,
    score: float | None,
    max_score: float | None,
    now: datetime,
) -> Remediation:
    """This check's `Remediation`, carrying the first completion time over from `previous`.

    A score that is not usable (see `remediation_status`) is kept as None, so a stored check never
    holds NaN. A previous check that was completed but has no `completed_at` completed by then.
    """
    completed_at = _first_completion(previous)
    if completed_at is None and status is RemediationStatus.COMPLETED:
        completed_at = now
    return Remediation(
        status=status,
        score=score if _usable(score) else None,
        max_score=max_score if _usable(max_score) else None,
        checked_at=now,
        completed_at=completed_at,
    )


def _first_completion(previous: Remediation | None) -> datetime | None:
    if previous is None:
        return None
    if previous.completed_at is None and previous.status is RemediationStatus.COMPLETED:
        return previous.checked_at
    return previous.completed_at


@dataclass(frozen=True)
class RemediationFlags:
    # The ticket was closed more than the grace period ago, yet the control still lacks points.
    closed_without_remediation: bool
    # Secure Score shows the work done while the ticket is still open.
    remediated_while_open: bool
    # A check saw the control completed, and it has since lost points (true until completed again).
    regressed: bool


def remediation_flags(
    previous: Remediation | None,
    current: Remediation,
    *,
    ticket_closed: bool,
    closed_at: datetime | None,
    grace: timedelta = DEFAULT_GRACE,
) -> RemediationFlags:
    """The flags of one check (`current`, its instant `checked_at`) against the ticket's state:
    `ticket_closed` per the tenant's state mapping, `closed_at` when it closed.

    A closed ticket without `closed_at` is not flagged: without the closing time the grace period
    cannot be told to have passed, and a false alarm on every such ticket would bury real ones.
    """
    in_progress = current.status is RemediationStatus.IN_PROGRESS
    overdue = closed_at is not None and current.checked_at - closed_at > grace
    was_completed = previous is not None and (
        previous.completed_at is not None or previous.status is RemediationStatus.COMPLETED
    )
    return RemediationFlags(
        closed_without_remediation=ticket_closed and in_progress and overdue,
        remediated_while_open=not ticket_closed and current.status is RemediationStatus.COMPLETED,
        regressed=was_completed and in_progress,
    )


# --- What the daily check reads and writes of a ticket row --------------------------------------------


@dataclass(frozen=True)
class RemediationFields:
    """What a ticket row holds of the checks and of the write-back: the `Ticket` fields of the same
    names (`shared.records`), all unset before the first check."""

    remediation_status: RemediationStatus | None = None
    remediation_score: float | None = None
    remediation_max_score: float | None = None
    remediation_checked_at: datetime | None = None
    remediation_completed_at: datetime | None = None
    closed_at: datetime | None = None
    closed_without_remediation: bool = False
    remediated_while_open: bool = False
    regressed: bool = False
    write_back_comment: str | None = None
    write_back_at: datetime | None = None
    write_back_error: str | None = None
    work_note_state: WorkNoteState | None = None
    work_note_at: datetime | None = None

    def last_check(self) -> Remediation | None:
        """The stored check, as `next_remediation` and `remediation_flags` take it; None before one."""
        if self.remediation_status is None or self.remediation_checked_at is None:
            return None
        return Remediation(
            status=self.remediation_status,
            score=self.remediation_score,
            max_score=self.remediation_max_score,
            checked_at=self.remediation_checked_at,
            completed_at=self.remediation_completed_at,
        )


@dataclass(frozen=True)
class RemediationRow:
    """What the daily check reads of one ticket made for an improvement action."""

    ticket_id: str
    action_id: str
    type: str  # the ServiceNow table
    number: str
    sys_id: str
    instance_url: str
    state: str
    state_updated_at: datetime | None
    status: str  # `created` once ServiceNow made the record (`creating`, `failed` have none)
    deleted: bool  # the record is gone from ServiceNow
    fields: RemediationFields = field(default_factory=RemediationFields)


@dataclass(frozen=True)
class RemediationChange:
    """Fields to set on one ticket row, by `Ticket` field name; None takes the value away."""

    ticket_id: str
    fields: Mapping[str, object]
