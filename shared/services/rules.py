"""A tenant's rules: list, read, create or replace, delete, and preview what one would create now
(nothing is created). The daily evaluation is `rule_evaluation.py`; which actions a rule takes is
`shared.rules`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.action_models import ImprovementActionQuery, ImprovementActionView
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import Conflict, NotFound
from shared.identity import Caller
from shared.models import ConnectionStatus
from shared.ports import ConnectionStore, ImprovementActions, TicketStore
from shared.rule_models import (
    MAX_RULES_PER_TENANT,
    PreviewedAction,
    RuleBody,
    RuleList,
    RulePreview,
    RulePreviewRequest,
    RuleView,
)
from shared.rule_ports import RuleRecord, RuleStore, TicketCreator
from shared.rules import Candidate, KnownTicket, plan
from shared.services.improvement_actions import ImprovementActionsService
from shared.services.rule_evaluation import RuleEvaluation


class RulePorts(Protocol):
    """What the composition root hands `RuleService.wired`."""

    @property
    def tickets(self) -> TicketStore: ...

    @property
    def connections(self) -> ConnectionStore: ...

    @property
    def improvement_actions(self) -> ImprovementActionsService: ...

    def ticketing_with(self, actions: ImprovementActions) -> TicketCreator:
        """The ticket service, reading improvement actions from `actions`."""
        ...


class RuleService:
    @classmethod
    def wired(cls, rules: RuleStore, ports: RulePorts, clock: Clock = SYSTEM_CLOCK) -> RuleService:
        """The service and its daily evaluation over `ports` (evaluations create through
        `ports.ticketing_with` the actions the Secure Score check read)."""
        evaluation = RuleEvaluation(
            rules=rules, tickets=ports.tickets, ticketing=ports.ticketing_with, clock=clock
        )
        return cls(
            rules=rules,
            connections=ports.connections,
            actions=ports.improvement_actions,
            evaluation=evaluation,
            clock=clock,
        )

    def __init__(
        self,
        *,
        rules: RuleStore,
        connections: ConnectionStore,
        actions: ImprovementActionsService,
        evaluation: RuleEvaluation,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`actions`: Secure Score for the preview (cached, interactive); `evaluation`: the daily
        run, which the Secure Score check calls (`SecureScoreReadHook`)."""
        self._rules = rules
        self._connections = connections
        self._actions = actions
        self.evaluation = evaluation
        self._clock = clock

    async def list(self, tenant_id: str) -> RuleList:
        records = await self._rules.list(tenant_id)
        state = await self._rules.state(tenant_id)
        paused = state.paused_until if state.paused_until and state.paused_until > self._clock.now() else None
        return RuleList(items=[_view(record) for record in records], paused_until=paused)

    async def get(self, tenant_id: str, rule_id: str) -> RuleView:
        return _view(await self._record(tenant_id, rule_id))

    async def put(self, caller: Caller, rule_id: str, body: RuleBody) -> tuple[RuleView, bool]:
        """Create or replace the rule; True when it was created.

        Raises:
            Conflict: the tenant has `MAX_RULES_PER_TENANT` rules already; PreconditionFailed (409)
                when another request changed the rule meanwhile.
        """
        now = self._clock.now()
        current = await self._rules.get(caller.tenant_id, rule_id)
        if current is None:
            if len(await self._rules.list(caller.tenant_id)) >= MAX_RULES_PER_TENANT:
                raise Conflict(f"A tenant has at most {MAX_RULES_PER_TENANT} rules: delete one first.")
            current = RuleRecord(
                tenant_id=caller.tenant_id, rule_id=rule_id, rule=body, created_at=now, updated_at=now,
                updated_by=caller.name,
            )  # fmt: skip
        record = current.model_copy(update={"rule": body, "updated_at": now, "updated_by": caller.name})
        return _view(await self._rules.put(record)), current.etag is None

    async def delete(self, tenant_id: str, rule_id: str) -> None:
        if not await self._rules.delete(tenant_id, rule_id):
            raise NotFound(f"Rule {rule_id} was not found.")

    async def preview(self, tenant_id: str, request: RulePreviewRequest) -> RulePreview:
        """What the rule would create now, from Secure Score as the Improvement actions page shows
        it; nothing is created or stored.

        Raises:
            NotFound: `ruleId` names no rule of the tenant.
            DependencyNotConfigured, UpstreamUnavailable: Graph is not configured or not answering.
        """
        rule = request.rule or (await self._record(tenant_id, request.rule_id or "")).rule
        connection = await self._connections.get(tenant_id)
        page = await self._actions.page(tenant_id, ImprovementActionQuery())
        labels = connection.instance_state_labels if connection is not None else {}
        here = connection.instance_url if connection is not None else ""
        planned = plan(rule, _candidates(page.items, here), labels)
        return RulePreview(
            would_create=[
                PreviewedAction(
                    action_id=a.id, title=a.title, category=a.category, points_to_gain=a.points_to_gain
                )
                for a in planned.create
            ],
            over_cap=planned.over_cap,
            skipped=planned.skipped,
            message=await self._notice(tenant_id, connection.status if connection else None, rule.enabled),
        )

    async def _notice(self, tenant_id: str, status: ConnectionStatus | None, enabled: bool) -> str | None:
        """Why a run would create nothing now, if it would not."""
        if status != ConnectionStatus.CONNECTED:
            return "ServiceNow is not connected: a run would create nothing."
        state = await self._rules.state(tenant_id)
        if state.paused_until is not None and state.paused_until > self._clock.now():
            return f"ServiceNow asked us to wait until {state.paused_until.isoformat()}: a run would create nothing."
        return None if enabled else "The rule is disabled: the daily run skips it."

    async def _record(self, tenant_id: str, rule_id: str) -> RuleRecord:
        record = await self._rules.get(tenant_id, rule_id)
        if record is None:
            raise NotFound(f"Rule {rule_id} was not found.")
        return record


def _view(record: RuleRecord) -> RuleView:
    return RuleView(
        **record.rule.model_dump(),
        id=record.rule_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
        updated_by=record.updated_by,
        last_run=record.last_run,
    )


def _candidates(items: Sequence[ImprovementActionView], instance_url: str) -> list[Candidate]:
    record_prefix = instance_url.rstrip("/") + "/"
    return [
        Candidate(
            id=item.id,
            title=item.title,
            category=item.category,
            max_score=item.max_score,
            score=item.current_score,
            deprecated=item.deprecated,
            tickets=tuple(
                # A ticket's link is on the instance it was made in (none while it is `creating`).
                KnownTicket(
                    t.id,
                    t.type,
                    t.state,
                    t.status,
                    t.number,
                    gone=t.deleted_in_servicenow or bool(t.url and not t.url.startswith(record_prefix)),
                )
                for t in item.tickets
            ),
        )
        for item in items
    ]
