"""The rules' stored rows and ports: the `rules` table, the ticket service they create through, and
the hook the daily Secure Score check calls after its read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from pydantic import AwareDatetime

from shared.identity import Caller
from shared.models import CreateTicket, ImprovementAction, TicketView
from shared.records import Connection, StoredRecord
from shared.rule_models import RuleBody, RuleRun


class RuleRecord(StoredRecord):
    """One rule (`rules` table, PK tenant id, RK rule id). `rule` and `last_run` are stored as JSON."""

    tenant_id: str
    rule_id: str
    rule: RuleBody
    created_at: AwareDatetime
    updated_at: AwareDatetime
    updated_by: str  # the admin's display name
    last_run: RuleRun | None = None


class RulesState(StoredRecord):
    """The tenant's evaluation state (`rules` table, PK tenant id, RK `STATE_ROW`)."""

    tenant_id: str
    paused_until: AwareDatetime | None = None  # ServiceNow asked us (429) to wait until then
    paused_reason: str | None = None


class HeldCreate(StoredRecord):
    """A rule's create held from before it is sent until it ends (`rules` table, PK tenant id, RK
    `~held~` and a hash of the action id). One that may have reached ServiceNow without our knowing
    its end (the create's deadline, a crash) is sent again, with the same Idempotency-Key and body
    whatever the day, by the next evaluation: the create protocol then finds its record instead of
    making a second one."""

    tenant_id: str
    action_id: str
    rule_id: str
    created_by_name: str  # "Rule: <name>" as the first send had it
    idempotency_key: str
    request_json: str  # the CreateTicket body, as sent
    held_at: AwareDatetime


class RuleStore(Protocol):
    async def list(self, tenant_id: str) -> list[RuleRecord]:
        """The tenant's rules, by id."""
        ...

    async def get(self, tenant_id: str, rule_id: str) -> RuleRecord | None: ...

    async def put(self, record: RuleRecord) -> RuleRecord:
        """Create or replace (with `etag`: only if unchanged, else PreconditionFailed; without:
        only if new, else PreconditionFailed)."""
        ...

    async def delete(self, tenant_id: str, rule_id: str) -> bool:
        """Whether there was such a rule."""
        ...

    async def record_runs(self, tenant_id: str, runs: Mapping[str, RuleRun]) -> None:
        """Set each rule's `last_run` only (a rule deleted meanwhile is left deleted)."""
        ...

    async def state(self, tenant_id: str) -> RulesState: ...

    async def pause(self, tenant_id: str, until: datetime, reason: str) -> None: ...

    async def held(self, tenant_id: str) -> Sequence[HeldCreate]:
        """The tenant's creates not known to have ended, oldest first."""
        ...

    async def hold(self, entry: HeldCreate) -> None:
        """Write `entry` (replacing one of its action's)."""
        ...

    async def release(self, tenant_id: str, action_id: str) -> None:
        """Delete the action's held create, if there is one."""
        ...


class TicketCreator(Protocol):
    """The idempotent create (`TicketingService.create`)."""

    async def create(self, caller: Caller, request: CreateTicket, idempotency_key: str | None) -> Created: ...


class Created(Protocol):
    @property
    def ticket(self) -> TicketView: ...

    @property
    def created(self) -> bool: ...


class SecureScoreReadHook(Protocol):
    """Called by the daily Secure Score check (`RemediationCheck.check_tenant`)."""

    async def wants_read(self, tenant_id: str) -> bool:
        """Whether to read Secure Score for a tenant that has no tickets made for actions."""
        ...

    async def after_read(
        self, connection: Connection, scores: Mapping[str, float], profiles: Sequence[ImprovementAction]
    ) -> None:
        """After the check: what it read, with no further Graph request."""
        ...
