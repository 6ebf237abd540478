"""The body of `POST /api/provisioning/diagnostics` ("Test connection"): a checklist, camelCase."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime

from shared.models import ApiModel

CheckId = Literal[
    "instance_reachable",
    "oauth_application",
    "read_incidents",
    "read_change_requests",
    "read_state_choices",
    "clock_skew",
    "refresh_token_lifetime",
]
CheckStatus = Literal["passed", "failed", "skipped"]


class DiagnosticCheck(ApiModel):
    """One item of the checklist. `fix` says what to do, in words, when the check failed."""

    id: CheckId
    title: str
    status: CheckStatus
    detail: str
    fix: str | None = None


class DiagnosticsResult(ApiModel):
    """Every check, in the order they ran; a check that needs one that failed is `skipped`."""

    checks: list[DiagnosticCheck]
    checked_at: AwareDatetime
