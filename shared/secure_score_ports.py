"""The ports of the Secure Score check: the ticket columns it reads and writes, and the write-back
to a control (kept apart from `ports.py`, which holds the rest)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.remediation import RemediationChange, RemediationRow


class RemediationRows(Protocol):
    """The `tickets` table's columns of the daily Secure Score check (`shared.remediation`)."""

    async def action_tickets(self, tenant_id: str) -> list[RemediationRow]:
        """The tenant's tickets made for an improvement action, newest first: one partition query
        of only the columns the check reads."""
        ...

    async def write(self, tenant_id: str, changes: Sequence[RemediationChange]) -> int:
        """Set fields of rows that exist, never making one (a row deleted meanwhile is skipped):
        merges of up to 100 rows a transaction; a row that loses a value (None) is read and
        replaced, ETag-conditional. The number of rows written."""
        ...


class SecureScoreWriter(Protocol):
    """Sets the state of a tenant's Secure Score control (`secureScoreControlProfiles` PATCH)."""

    async def update_control(self, tenant_id: str, control_id: str, *, comment: str, state: str) -> None:
        """Set the control's `state` (`Default`, `Ignored`, `ThirdParty`, `Reviewed`) and `comment`.
        Each call appends an entry to the control's history, so call it only when the state differs.

        BadRequest before sending for a device control (`shared.secure_score.writable_control`)
        or another state; NotFound for an unknown control; UpstreamUnavailable when Graph throttled
        or did not answer (`retry_after`; `ambiguous` when the update may have landed all the same);
        UpstreamError when the app lacks SecurityEvents.ReadWrite.All; DependencyNotConfigured
        without Graph."""
        ...
