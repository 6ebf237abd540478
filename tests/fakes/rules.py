"""The `rules` table in memory (`RuleStore`), and `RulesWorld`: the daily Secure Score check with the
rules' hook, the ticket service it creates through, and the preview, all over fakes of their ports
(one connected tenant, as in `RemediationWorld`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.errors import PreconditionFailed
from shared.identity import Caller, Role
from shared.ports import ConnectionStore, ImprovementActions, TicketStore
from shared.records import Ticket
from shared.rule_models import RuleBody, RuleRun
from shared.rule_ports import HeldCreate, RuleRecord, RulesState, RuleStore
from shared.services.improvement_actions import ImprovementActionsService
from shared.services.remediation_check import RemediationCheck
from shared.services.rules import RulePorts, RuleService
from shared.services.ticket_policy import TicketingPolicy
from shared.services.ticketing import TicketingService
from tests.fakes.remediation import TENANT, RemediationWorld
from tests.fakes.tickets import InMemoryClaims, InMemoryQueue, InMemoryServiceNowRecords

ADMIN = Caller(TENANT, "33333333-3333-3333-3333-333333333333", "Ada Admin", frozenset({Role.ADMIN}))


class InMemoryRuleStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], RuleRecord] = {}
        self.states: dict[str, RulesState] = {}
        self.held_rows: dict[tuple[str, str], HeldCreate] = {}  # (tenant, action id)
        self._etags = 0

    async def list(self, tenant_id: str) -> list[RuleRecord]:
        return [record for (tenant, _), record in sorted(self.rows.items()) if tenant == tenant_id]

    async def get(self, tenant_id: str, rule_id: str) -> RuleRecord | None:
        return self.rows.get((tenant_id, rule_id))

    async def put(self, record: RuleRecord) -> RuleRecord:
        key = (record.tenant_id, record.rule_id)
        current = self.rows.get(key)
        if (current is None) != (record.etag is None) or (
            current is not None and current.etag != record.etag
        ):
            raise PreconditionFailed()
        self._etags += 1
        self.rows[key] = record.model_copy(update={"etag": f"e{self._etags}"})
        return self.rows[key]

    async def delete(self, tenant_id: str, rule_id: str) -> bool:
        return self.rows.pop((tenant_id, rule_id), None) is not None

    async def record_runs(self, tenant_id: str, runs: Mapping[str, RuleRun]) -> None:
        for rule_id, run in runs.items():
            if (tenant_id, rule_id) in self.rows:
                self.rows[(tenant_id, rule_id)] = self.rows[(tenant_id, rule_id)].model_copy(
                    update={"last_run": run}
                )

    async def state(self, tenant_id: str) -> RulesState:
        return self.states.get(tenant_id, RulesState(tenant_id=tenant_id))

    async def pause(self, tenant_id: str, until: datetime, reason: str) -> None:
        self.states[tenant_id] = RulesState(tenant_id=tenant_id, paused_until=until, paused_reason=reason)

    async def held(self, tenant_id: str) -> Sequence[HeldCreate]:
        found = [entry for (tenant, _), entry in self.held_rows.items() if tenant == tenant_id]
        return sorted(found, key=lambda entry: entry.held_at)

    async def hold(self, entry: HeldCreate) -> None:
        self.held_rows[(entry.tenant_id, entry.action_id)] = entry

    async def release(self, tenant_id: str, action_id: str) -> None:
        self.held_rows.pop((tenant_id, action_id), None)


def _conforms(store: InMemoryRuleStore) -> RuleStore:
    return store


@dataclass
class RulesWorld:
    """`RemediationWorld` (tickets, Secure Score, the connection, the clock) plus the rules."""

    world: RemediationWorld
    store: InMemoryRuleStore = field(default_factory=InMemoryRuleStore)
    servicenow: InMemoryServiceNowRecords = field(default_factory=InMemoryServiceNowRecords)
    claims: InMemoryClaims = field(default_factory=InMemoryClaims)
    queue: InMemoryQueue = field(default_factory=InMemoryQueue)
    primed: list[ImprovementActions] = field(default_factory=list)  # what each evaluation created with
    policy: TicketingPolicy = field(default_factory=TicketingPolicy)

    def __post_init__(self) -> None:
        self.claims.clock = self.world.clock

    def ticketing_with(self, actions: ImprovementActions) -> TicketingService:
        self.primed.append(actions)
        w = self.world
        return TicketingService(
            connections=w.connections, tickets=w.tickets, idempotency=self.claims, servicenow=self.servicenow,
            actions=actions, queue=self.queue, clock=w.clock, policy=self.policy,
        )  # fmt: skip

    @property
    def tickets(self) -> TicketStore:
        return self.world.tickets

    @property
    def connections(self) -> ConnectionStore:
        return self.world.connections

    @property
    def improvement_actions(self) -> ImprovementActionsService:
        w = self.world
        return ImprovementActionsService(
            actions=w.actions, tickets=w.tickets, connections=w.connections, clock=w.clock
        )

    @property
    def service(self) -> RuleService:
        return RuleService.wired(self.store, self, self.world.clock)

    def check(self) -> RemediationCheck:
        w = self.world
        return RemediationCheck(
            tickets=w.rows, actions=w.actions, writer=w.graph, connections=w.connections, clock=w.clock,
            after_read=self.service.evaluation,
        )  # fmt: skip

    async def daily(self) -> None:
        """The daily check (and so the evaluation), as the sync runs it."""
        await self.check().check_tenant(self.world.connection())

    async def put(self, rule_id: str, **body: Any) -> RuleRecord:
        rule = RuleBody.model_validate(
            {"name": rule_id, "ticket": {"type": "incident", "priority": 3, "dueInDays": 14}, **body}
        )
        await self.service.put(ADMIN, rule_id, rule)
        record = await self.store.get(TENANT, rule_id)
        assert record is not None
        return record

    def rule_tickets(self) -> list[Ticket]:
        return [t for t in self.world.tickets.rows.values() if t.created_by_name.startswith("Rule: ")]

    async def last_run(self, rule_id: str) -> RuleRun:
        record = await self.store.get(TENANT, rule_id)
        assert record is not None
        assert record.last_run is not None
        return record.last_run


def _wired(world: RulesWorld) -> RulePorts:
    return world
