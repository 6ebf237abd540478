"""The HTTP API's view of Secure Score remediation (camelCase): a ticket's last check with its flags
and write-back, the flag counts of the summary cards, the flag a ticket listing filters by, and
the tenant's write-back switch; and the counts the ticket store hands the summary.

`shared.models` builds its ticket, summary and connection bodies on these, so they cannot build on
its `ApiModel`: `_Body` has the same configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from shared.remediation import RemediationStatus

RemediationFlag = Literal["closedWithoutRemediation", "remediatedWhileOpen", "regressed"]
# The `Ticket` field behind each flag (its table column is the same name in PascalCase).
FLAG_FIELDS: dict[RemediationFlag, str] = {
    "closedWithoutRemediation": "closed_without_remediation",
    "remediatedWhileOpen": "remediated_while_open",
    "regressed": "regressed",
}


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class RemediationFlags(_Body):
    """What the last check set against the ticket's own state (`shared.remediation`)."""

    closed_without_remediation: bool
    remediated_while_open: bool
    regressed: bool


class WriteBack(_Body):
    """The comment last written on the action's Secure Score control, when, and the last error
    (kept until a write-back succeeds; the next check tries again). A device control (`scid_`)
    cannot be written: `error` then says so and nothing is tried."""

    comment: str | None = None
    written_at: AwareDatetime | None = None
    error: str | None = None


class RemediationView(_Body):
    """Whether the ticket's improvement action got done, per the daily Secure Score check.
    `status`, `checkedAt` and the points are null until the first check (a write-back may come
    first); `completedAt` is when a check first saw it completed, `closedAt` when the ticket closed."""

    status: RemediationStatus | None
    score: float | None
    max_score: float | None
    checked_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    closed_at: AwareDatetime | None
    flags: RemediationFlags
    write_back: WriteBack | None


class FlagCounts(_Body):
    """How many of a card's tickets carry each flag (`GET /api/tickets?flag=` lists them)."""

    closed_without_remediation: int = 0
    remediated_while_open: int = 0
    regressed: int = 0


class SecureScoreView(_Body):
    """The tenant's Secure Score settings: whether tickets are written back to their controls,
    whether a ticket remediated while open gets a work note, when the daily check last ran, and
    until when Graph asked to be left alone (null unless now)."""

    write_back: bool = False
    work_notes: bool = False
    checked_at: AwareDatetime | None = None
    paused_until: AwareDatetime | None = None


class SecureScoreUpdate(_Body):
    """PUT /api/provisioning/secure-score: turn the write-back and/or the work notes on or off.
    At least one; a switch left out (or null) keeps its setting."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    write_back: bool | None = Field(default=None, strict=True)
    work_notes: bool | None = Field(default=None, strict=True)

    @model_validator(mode="after")
    def _one_at_least(self) -> SecureScoreUpdate:
        if self.write_back is None and self.work_notes is None:
            raise ValueError("give writeBack, workNotes or both")
        return self


@dataclass(frozen=True)
class TicketCounts:
    """What the summary cards count, from one read of the tenant's tickets."""

    states: dict[tuple[str, str], int]  # (type, state) -> tickets
    flags: dict[tuple[str, RemediationFlag], int]  # (type, flag) -> tickets with it set
