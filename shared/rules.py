"""Which improvement actions a rule creates tickets for: pure functions over what Secure Score and
the tickets index say (no I/O; `shared.services.rule_evaluation` and `shared.services.rules` feed
them).

An action matches a rule when it has points left to gain (`max_score - score` > 0 and at least
the rule's minimum; an action Secure Score does not score has none), is in the rule's categories
and, when the rule names actions, among them, is not excluded, and is neither deprecated nor a
device control unless the rule asks for those. A matching action gets a ticket only while it has
no open ticket from us: one that is not `failed`, not deleted in ServiceNow, on the tenant's
current instance, and not resolved, closed or cancelled per the instance's states
(`ticket_states.closed_state`). So an action whose ticket was closed and that
Secure Score shows undone again (the check's `regressed` flag) gets a new one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from shared.models import RecommendationCategory
from shared.rule_models import RuleBody, RuleMatch, SkippedAction
from shared.ticket_states import StateLabels, closed_state

DEVICE_CONTROL_PREFIX = "scid_"


@dataclass(frozen=True)
class KnownTicket:
    """A ticket we made for an action, as the tickets index has it."""

    ticket_id: str
    type: str
    state: str
    status: str  # creating, created, failed
    number: str = ""
    # Deleted in ServiceNow, or made on an instance the tenant has left: nobody can work on it.
    gone: bool = False


@dataclass(frozen=True)
class Candidate:
    """An improvement action with its points and our tickets for it (newest first)."""

    id: str
    title: str
    category: RecommendationCategory | None
    max_score: float | None
    score: float | None
    deprecated: bool
    tickets: tuple[KnownTicket, ...] = ()

    @property
    def points_to_gain(self) -> float:
        if self.max_score is None or self.score is None:
            return 0.0
        if not (math.isfinite(self.max_score) and math.isfinite(self.score)):
            return 0.0
        return max(0.0, self.max_score - self.score)


@dataclass
class Plan:
    """What one rule would do now: create `create` (at most its cap), leave `over_cap` for later."""

    create: list[Candidate] = field(default_factory=list)
    skipped: list[SkippedAction] = field(default_factory=list)
    over_cap: int = 0


def matches(match: RuleMatch, action: Candidate) -> bool:
    gain = action.points_to_gain
    if gain <= 0 or gain < match.min_points_to_gain:
        return False
    if match.categories and action.category not in match.categories:
        return False
    if match.include_action_ids and action.id not in match.include_action_ids:
        return False
    if action.id in match.exclude_action_ids:
        return False
    if action.deprecated and not match.include_deprecated:
        return False
    return match.include_device_controls or not action.id.startswith(DEVICE_CONTROL_PREFIX)


def open_ticket(action: Candidate, labels: StateLabels) -> KnownTicket | None:
    """The action's ticket that is still being worked on, if any."""
    for ticket in action.tickets:
        if ticket.gone or ticket.status == "failed":
            continue
        if not closed_state(ticket.type, ticket.state, labels):
            return ticket
    return None


def plan(
    rule: RuleBody, actions: Iterable[Candidate], labels: StateLabels, *, taken: Sequence[str] = ()
) -> Plan:
    """The rule's tickets to create now, most points to gain first; `taken`: actions another rule
    already creates for in this run."""
    result = Plan()
    wanted = sorted((a for a in actions if matches(rule.match, a)), key=lambda a: (-a.points_to_gain, a.id))
    for action in wanted:
        ticket = open_ticket(action, labels)
        if action.id in taken:
            result.skipped.append(
                SkippedAction(action_id=action.id, reason="another rule creates its ticket")
            )
        elif ticket is not None:
            name = ticket.number or ticket.ticket_id
            result.skipped.append(SkippedAction(action_id=action.id, reason=f"open ticket {name}"))
        elif len(result.create) < rule.max_per_run:
            result.create.append(action)
        else:
            result.over_cap += 1
    return result


def idempotency_key(tenant_id: str, action: Candidate, day: date) -> str:
    """The create's Idempotency-Key: one per tenant, action, UTC day and the action's newest ticket,
    so a repeated or doubled evaluation makes nothing twice (whichever rule it runs), while an
    action whose ticket was closed since can get a new one the same day. Not the rule's id: two
    rules never create two tickets for one action."""
    previous = action.tickets[0].ticket_id if action.tickets else "-"
    raw = "\n".join((tenant_id, action.id, day.isoformat(), previous))
    return "rule-" + hashlib.sha256(raw.encode()).hexdigest()
