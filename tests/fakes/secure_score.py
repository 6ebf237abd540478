"""Secure Score control updates (`SecureScoreWriter`) in memory, for the write-back.

`patches` records each update that landed, in order. `fail_next(error)` makes the next calls raise
`error` instead (each scripted error is used once, oldest first), e.g. Graph throttling a tenant:
`fail_next(throttled(120))`. Like the adapter, a device control (`scid_…`) or a state Graph does not
know is refused with `BadRequest` before anything is recorded; `attempts` counts every call that
got past that check, landed or not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from shared.errors import BadRequest, UpstreamUnavailable
from shared.secure_score import CONTROL_STATES, writable_control
from shared.secure_score_ports import SecureScoreWriter


@dataclass(frozen=True)
class ControlPatch:
    tenant_id: str
    control_id: str
    comment: str
    state: str


def throttled(retry_after: int = 30) -> UpstreamUnavailable:
    """What the adapter raises for Graph's 429: the tenant's Graph work should pause `retry_after`."""
    return UpstreamUnavailable(
        "Microsoft Graph is unavailable or rate limiting us (update a Secure Score control: HTTP 429).",
        retry_after=retry_after,
        hinted=True,
    )


class InMemorySecureScoreWriter:
    def __init__(self) -> None:
        self.patches: list[ControlPatch] = []
        self.attempts: list[ControlPatch] = []
        self._failures: deque[Exception] = deque()

    def fail_next(self, *errors: Exception) -> None:
        self._failures.extend(errors)

    async def update_control(self, tenant_id: str, control_id: str, *, comment: str, state: str) -> None:
        if not writable_control(control_id):
            raise BadRequest(f"Improvement action {control_id} is a device control.")
        if state not in CONTROL_STATES:
            raise BadRequest(f"The control state must be one of {', '.join(CONTROL_STATES)}.")
        patch = ControlPatch(tenant_id, control_id, comment, state)
        self.attempts.append(patch)
        if self._failures:
            raise self._failures.popleft()
        self.patches.append(patch)

    def latest(self, tenant_id: str, control_id: str) -> ControlPatch | None:
        """The last update of that control that landed, as the next read would show it."""
        found = [p for p in self.patches if (p.tenant_id, p.control_id) == (tenant_id, control_id)]
        return found[-1] if found else None


def _conforms(writer: InMemorySecureScoreWriter) -> SecureScoreWriter:
    return writer  # mypy checks here that the fake implements the port
