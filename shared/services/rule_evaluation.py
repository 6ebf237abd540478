"""The daily evaluation of a tenant's rules, right after the daily Secure Score check
(`remediation_check.py` calls `after_read` with what it read: no further Graph request).

Per tenant, in rule id order: the actions each enabled rule matches (`shared.rules.plan`) get a
ticket through the ticket service's idempotent create (`TicketingService.create`), its
Idempotency-Key derived from the tenant, the action, the UTC day and the action's newest ticket
(`shared.rules.idempotency_key`), so a repeated or doubled evaluation creates nothing twice. The
create reads the action from what the check read (`PrimedActions`), not from Graph. The ticket's
`createdBy` is the rule ("Rule: <name>"), a principal with no role.

Safety: at most the rule's `maxPerRun` tickets a run (the rest is `overCap`); a tenant not
connected, or needing re-authorization, creates nothing and says so; ServiceNow unavailable or
throttling (`UpstreamUnavailable`, its Retry-After) stops the tenant's evaluation and pauses it
until then (`RulesState.paused_until`); no create starts past `RUN_BUDGET`. Each rule's outcome is
stored as its `lastRun`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import (
    AppError,
    ConnectionNotReady,
    IdempotencyKeyInProgress,
    NotFound,
    ReauthorizationRequired,
    UpstreamUnavailable,
)
from shared.identity import Caller
from shared.models import ConnectionStatus, CreateTicket, ImprovementAction
from shared.ports import ImprovementActions, TicketStore
from shared.records import ActionTicket, Connection
from shared.rule_models import MAX_LISTED, CreatedTicket, RuleRun, RunOutcome, SkippedAction
from shared.rule_ports import HeldCreate, RuleRecord, RuleStore, TicketCreator
from shared.rules import Candidate, KnownTicket, idempotency_key, plan

logger = logging.getLogger(__name__)

TicketingFactory = Callable[[ImprovementActions], TicketCreator]
# The object ids of the rules' principals: stable per tenant and rule, never a user's.
RULE_PRINCIPALS = uuid.UUID("3f0c2b9e-5d7a-4c1e-9b8f-6a2d4e1c7b55")
# No create starts later than this into a tenant's run: it runs inside the sync's lease (10
# minutes, the check's write-back already ending by half of it); the rest is left for the next run.
RUN_BUDGET = timedelta(minutes=3)


class PrimedActions:
    """Secure Score as the daily check read it: the create's reads of an action cost nothing."""

    def __init__(self, profiles: Sequence[ImprovementAction], scores: Mapping[str, float]) -> None:
        self._by_id = {profile.id: profile for profile in profiles}
        self._scores = dict(scores)

    async def get_improvement_action(self, tenant_id: str, action_id: str) -> ImprovementAction:
        if action_id not in self._by_id:
            raise NotFound(f"Improvement action {action_id} was not found in Microsoft Secure Score.")
        return self._by_id[action_id]

    async def list_improvement_actions(self, tenant_id: str) -> list[ImprovementAction]:
        return list(self._by_id.values())

    async def control_scores(self, tenant_id: str) -> dict[str, float]:
        return dict(self._scores)


def candidates(
    profiles: Sequence[ImprovementAction],
    scores: Mapping[str, float],
    index: Mapping[str, list[ActionTicket]],
    instance_url: str,
) -> list[Candidate]:
    here = instance_url.rstrip("/")
    return [
        Candidate(
            id=profile.id,
            title=profile.title,
            category=profile.control_category,
            max_score=profile.max_score,
            score=scores.get(profile.id),
            deprecated=profile.deprecated,
            tickets=tuple(
                KnownTicket(
                    t.ticket_id,
                    t.type,
                    t.state,
                    t.status,
                    t.number,
                    gone=t.deleted or t.instance_url.rstrip("/") != here,
                )
                for t in index.get(profile.id, ())
            ),
        )
        for profile in profiles
    ]


def rule_caller(tenant_id: str, rule_id: str, name: str) -> Caller:
    """Who a rule's tickets are created by: the rule ("Rule: <name>"), with no role of its own."""
    user_id = str(uuid.uuid5(RULE_PRINCIPALS, f"{tenant_id}/{rule_id}"))
    return Caller(tenant_id, user_id, name, frozenset())


@dataclass
class _Tenant:
    """One tenant's evaluation: what it read, and what stops it."""

    connection: Connection
    actions: list[Candidate]
    creator: TicketCreator
    now: datetime
    taken: set[str] = field(default_factory=set)  # actions a rule of this run created for
    stopped: tuple[RunOutcome, str] | None = None
    resent: dict[str, _RuleRun] = field(default_factory=dict)  # held creates sent again, by rule


@dataclass
class _RuleRun:
    created: list[CreatedTicket] = field(default_factory=list)
    skipped: list[SkippedAction] = field(default_factory=list)
    errors: list[SkippedAction] = field(default_factory=list)
    left: int = 0  # planned, not tried: the evaluation stopped first


class RuleEvaluation:
    def __init__(
        self,
        *,
        rules: RuleStore,
        tickets: TicketStore,
        ticketing: TicketingFactory,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`ticketing`: the ticket service, reading actions from the given port."""
        self._rules = rules
        self._tickets = tickets
        self._ticketing = ticketing
        self._clock = clock

    async def wants_read(self, tenant_id: str) -> bool:
        return any(record.rule.enabled for record in await self._rules.list(tenant_id))

    async def after_read(
        self, connection: Connection, scores: Mapping[str, float], profiles: Sequence[ImprovementAction]
    ) -> None:
        tenant_id = connection.tenant_id
        enabled = [record for record in await self._rules.list(tenant_id) if record.rule.enabled]
        if not enabled:
            return
        runs = await self.evaluate(connection, enabled, scores, profiles)
        await self._rules.record_runs(tenant_id, runs)
        made = sum(len(run.created) for run in runs.values())
        logger.info("Rules: %d rule(s) evaluated, %d ticket(s) created", len(runs), made)

    async def evaluate(
        self,
        connection: Connection,
        rules: Sequence[RuleRecord],
        scores: Mapping[str, float],
        profiles: Sequence[ImprovementAction],
    ) -> dict[str, RuleRun]:
        """Each rule's run (creating its tickets); nothing is stored here but the pause."""
        now = self._clock.now()
        stopped = await self._stopped(connection, now)
        if stopped is not None:
            return {r.rule_id: RuleRun(at=now, outcome=stopped[0], message=stopped[1]) for r in rules}
        index = await self._tickets.by_improvement_action(connection.tenant_id)
        creator = self._ticketing(PrimedActions(profiles, scores))
        tenant = _Tenant(
            connection, candidates(profiles, scores, index, connection.instance_url), creator, now
        )
        await self._resend_held(tenant)
        return {record.rule_id: await self._run(tenant, record) for record in rules}

    async def _resend_held(self, tenant: _Tenant) -> None:
        """Send again, before anything new, the creates an earlier run did not see end: same key,
        same body, so one that reached ServiceNow is found there rather than made twice."""
        for entry in await self._rules.held(tenant.connection.tenant_id):
            if tenant.stopped is not None:
                return
            tenant.taken.add(entry.action_id)
            run = tenant.resent.setdefault(entry.rule_id, _RuleRun())
            await self._send(tenant, entry, run)

    async def _stopped(self, connection: Connection, now: datetime) -> tuple[RunOutcome, str] | None:
        if connection.status != ConnectionStatus.CONNECTED:
            what = (
                "needs re-authorization"
                if connection.status.value.startswith("reauth")
                else "is not connected"
            )
            return "not_connected", f"ServiceNow {what}: no ticket was created."
        state = await self._rules.state(connection.tenant_id)
        if state.paused_until is not None and state.paused_until > now:
            return "paused", f"ServiceNow asked us to wait until {state.paused_until.isoformat()}."
        return None

    async def _run(self, tenant: _Tenant, record: RuleRecord) -> RuleRun:
        labels = tenant.connection.instance_state_labels
        planned = plan(record.rule, tenant.actions, labels, taken=sorted(tenant.taken))
        run = tenant.resent.pop(record.rule_id, _RuleRun())
        run.skipped += planned.skipped
        for action in planned.create:
            if tenant.stopped is None and self._clock.now() - tenant.now > RUN_BUDGET:
                tenant.stopped = "capped", "The run's time was up."
            if tenant.stopped is not None:
                run.left += 1
                continue
            tenant.taken.add(action.id)
            await self._create(tenant, record, action, run)
        return _finished(tenant, run, planned.over_cap, record.rule.max_per_run)

    async def _create(self, tenant: _Tenant, record: RuleRecord, action: Candidate, run: _RuleRun) -> None:
        tenant_id, rule = tenant.connection.tenant_id, record.rule
        request = CreateTicket(
            type=rule.ticket.type,
            priority=rule.ticket.priority,
            due_date=tenant.now.date() + timedelta(days=rule.ticket.due_in_days),
            recommendation_source=rule.ticket.recommendation_source,
            improvement_action_id=action.id,
        )
        entry = HeldCreate(
            tenant_id=tenant_id,
            action_id=action.id,
            rule_id=record.rule_id,
            created_by_name=f"Rule: {rule.name}",
            idempotency_key=idempotency_key(tenant_id, action, tenant.now.date()),
            request_json=request.model_dump_json(by_alias=True),
            held_at=self._clock.now(),
        )
        await self._rules.hold(entry)  # before the send: a crash after it leaves the create held
        await self._send(tenant, entry, run)

    async def _send(self, tenant: _Tenant, entry: HeldCreate, run: _RuleRun) -> None:
        """One held create; released once it ended (made, found, or refused for good)."""
        tenant_id, action_id = entry.tenant_id, entry.action_id
        caller = rule_caller(tenant_id, entry.rule_id, entry.created_by_name)
        request = CreateTicket.model_validate_json(entry.request_json)
        try:
            result = await tenant.creator.create(caller, request, entry.idempotency_key)
        except UpstreamUnavailable as error:  # may have reached ServiceNow: held for the next run
            run.left += 1
            until = self._clock.now() + timedelta(seconds=error.retry_after)
            tenant.stopped = "paused", f"{error.message} Paused until {until.isoformat()}."
            await self._rules.pause(tenant_id, until, error.message)
            return
        except (ConnectionNotReady, ReauthorizationRequired, IdempotencyKeyInProgress) as error:
            run.left += 1  # held: sent again once connected, or once the other sender is done
            if not isinstance(error, IdempotencyKeyInProgress):
                tenant.stopped = "not_connected", error.message
            return
        except AppError as error:  # this action only: a refusal, a key another rule used today
            await self._rules.release(tenant_id, action_id)
            run.errors.append(SkippedAction(action_id=action_id, reason=error.message))
            return
        await self._rules.release(tenant_id, action_id)
        ticket = result.ticket
        if result.created:
            run.created.append(CreatedTicket(action_id=action_id, ticket_id=ticket.id, number=ticket.number))
        else:
            reason = f"created by an earlier evaluation: {ticket.number or ticket.id}"
            run.skipped.append(SkippedAction(action_id=action_id, reason=reason))


def _finished(tenant: _Tenant, run: _RuleRun, over_cap: int, cap: int) -> RuleRun:
    outcome: RunOutcome = "completed"
    message = None
    if tenant.stopped is not None and run.left:
        outcome, message = tenant.stopped
        message = f"{message} {run.left} ticket(s) left for a later run."
    elif over_cap:
        outcome, message = "capped", f"Capped at {cap}: {over_cap} matching action(s) left for a later run."
    elif run.errors and not run.created:
        outcome = "failed"
    return RuleRun(
        at=tenant.now,
        outcome=outcome,
        message=message,
        created=run.created,
        skipped=run.skipped[:MAX_LISTED],
        skipped_count=len(run.skipped),
        over_cap=over_cap + run.left,
        errors=run.errors[:MAX_LISTED],
    )
