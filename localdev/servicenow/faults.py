"""Faults a test can queue for the next calls: the ways a real instance makes a client fail.

Kinds: ``429`` (rate-limit shaped: ``Retry-After`` and ``X-RateLimit-*``), ``403`` (refused by an
ACL, business rule or data policy), ``500``, ``503`` (with ``Retry-After`` only when the fault
names ``retry_after``, as the instance's rate limiting and maintenance answer), ``timeout`` (hold
the response for ``delay_seconds``) and ``drop`` (close the connection without any response).
With ``after_processing`` the request is carried out first (a POST does create the record) and
only the response is lost, which is the "ServiceNow answered 201 but we never heard it" case
idempotent creates must survive. With ``late_commit`` (kind ``timeout``) the request is held
first and carried out after the hold: a transaction still running when the client gave up, whose
record appears only later.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

FaultKind = Literal["429", "403", "500", "503", "timeout", "drop"]
FAULT_KINDS: tuple[FaultKind, ...] = ("429", "403", "500", "503", "timeout", "drop")
DEFAULT_TIMEOUT_DELAY_SECONDS = 30.0
DEFAULT_RETRY_AFTER_SECONDS = 1


@dataclass
class Fault:
    """One queued fault rule; it fires on the next ``remaining`` matching requests."""

    fault_id: int
    kind: FaultKind
    remaining: int
    method: str | None = None
    path_prefix: str | None = None
    after_processing: bool = False
    delay_seconds: float = DEFAULT_TIMEOUT_DELAY_SECONDS
    retry_after: int | None = None  # None: 429 says DEFAULT_RETRY_AFTER_SECONDS, 503 says nothing
    late_commit: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultPlanError(ValueError):
    """A fault request the control API cannot accept."""


class FaultPlan:
    """The queue of pending faults, consumed in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self.fired = 0

    def reset(self) -> None:
        self._faults.clear()
        self.fired = 0

    @property
    def pending(self) -> list[Fault]:
        return [fault for fault in self._faults if fault.remaining > 0]

    def add_from_json(self, body: Mapping[str, Any]) -> Fault:
        """Validate a control-API body and queue the fault."""
        kind = str(body.get("kind", ""))
        if kind not in FAULT_KINDS:
            raise FaultPlanError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        try:
            count = int(body.get("count", 1))
            delay = float(body.get("delay_seconds", DEFAULT_TIMEOUT_DELAY_SECONDS))
            given = body.get("retry_after")
            retry_after = None if given is None else int(given)
        except (TypeError, ValueError) as exc:
            raise FaultPlanError("count, delay_seconds and retry_after must be numbers") from exc
        if count < 1 or delay < 0 or (retry_after is not None and retry_after < 0):
            raise FaultPlanError("count must be >= 1; delay_seconds and retry_after >= 0")
        late_commit = bool(body.get("late_commit", False))
        if late_commit and (kind != "timeout" or body.get("after_processing")):
            raise FaultPlanError("late_commit goes with kind timeout, without after_processing")
        method = body.get("method")
        prefix = body.get("path_prefix")
        fault = Fault(
            fault_id=next(self._ids),
            kind=kind,
            remaining=count,
            method=str(method).upper() if method else None,
            path_prefix=str(prefix) if prefix else None,
            after_processing=bool(body.get("after_processing", False)),
            delay_seconds=delay,
            retry_after=retry_after,
            late_commit=late_commit,
        )
        self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first pending fault matching this request, with one use consumed."""
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                self.fired += 1
                return fault
        return None
