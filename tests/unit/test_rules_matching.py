"""Which actions a rule takes (`shared.rules`), and the Idempotency-Key of its creates."""

from __future__ import annotations

from datetime import date
from typing import Any

from shared.models import ImprovementAction
from shared.records import ActionTicket
from shared.rule_models import RuleBody, RuleMatch
from shared.rules import Candidate, KnownTicket, idempotency_key, matches, open_ticket, plan
from shared.services.rule_evaluation import candidates

LABELS = {"incident": {"9": "Closed by vendor"}}


def candidate(action_id: str = "AdminMFAV2", **fields: Any) -> Candidate:
    values: dict[str, Any] = {
        "id": action_id, "title": "t", "category": "Identity", "max_score": 10.0, "score": 0.0,
        "deprecated": False, **fields,
    }  # fmt: skip
    return Candidate(**values)


def test_only_actions_with_points_to_gain_match() -> None:
    match = RuleMatch()
    assert matches(match, candidate())
    assert not matches(match, candidate(score=10.0))
    assert not matches(match, candidate(score=None))  # not scored
    assert not matches(match, candidate(max_score=None))
    assert not matches(match, candidate(score=float("nan")))
    assert not matches(RuleMatch(min_points_to_gain=5), candidate(score=6.0))
    assert matches(RuleMatch(min_points_to_gain=4), candidate(score=6.0))


def test_categories_ids_deprecated_and_device_controls() -> None:
    assert not matches(RuleMatch(categories=["Data"]), candidate())
    assert matches(RuleMatch(categories=["Data", "Identity"]), candidate())
    assert not matches(RuleMatch(include_action_ids=["Other"]), candidate())
    assert matches(RuleMatch(include_action_ids=["AdminMFAV2"]), candidate())
    assert not matches(RuleMatch(exclude_action_ids=["AdminMFAV2"]), candidate())
    assert not matches(RuleMatch(), candidate(deprecated=True))
    assert matches(RuleMatch(include_deprecated=True), candidate(deprecated=True))
    assert not matches(RuleMatch(), candidate("scid_2000"))
    assert matches(RuleMatch(include_device_controls=True), candidate("scid_2000"))


def test_an_open_ticket_is_one_not_failed_and_not_closed_by_the_instance_states() -> None:
    def with_ticket(state: str, status: str = "created", type: str = "incident") -> Candidate:
        return candidate(tickets=(KnownTicket("t1", type, state, status, "INC0010001"),))

    assert open_ticket(with_ticket("2"), LABELS) is not None
    assert open_ticket(with_ticket("", "creating"), LABELS) is not None
    assert open_ticket(with_ticket("", "failed"), LABELS) is None
    for closed in ("6", "7", "8", "9"):  # resolved, closed, cancelled, the instance's own closed state
        assert open_ticket(with_ticket(closed), LABELS) is None
    assert open_ticket(with_ticket("3", type="change_request"), LABELS) is None  # closed change
    assert open_ticket(with_ticket("-1", type="change_request"), LABELS) is not None  # implement


def test_a_ticket_deleted_in_servicenow_or_on_another_instance_is_not_open() -> None:
    gone = candidate(tickets=(KnownTicket("t1", "incident", "2", "created", "INC0010001", gone=True),))
    assert open_ticket(gone, LABELS) is None


def test_the_daily_candidates_mark_deleted_and_other_instance_tickets_gone() -> None:
    def ticket(ticket_id: str, instance: str, deleted: bool = False) -> ActionTicket:
        return ActionTicket(ticket_id, "incident", "INC1", "a" * 32, instance, "2", "created", deleted)

    here = "https://contoso.service-now.com"
    index = {
        "AdminMFAV2": [
            ticket("t3", here + "/", deleted=True),
            ticket("t2", "https://old.service-now.com"),
            ticket("t1", here),
        ]
    }
    profile = ImprovementAction(id="AdminMFAV2", title="t", max_score=10.0)
    [action] = candidates([profile], {"AdminMFAV2": 0.0}, index, here)
    assert [t.gone for t in action.tickets] == [True, True, False]


def test_plan_orders_by_points_and_skips_taken_and_open_ones() -> None:
    rule = RuleBody.model_validate(
        {"name": "r", "ticket": {"type": "incident", "priority": 3, "dueInDays": 1}, "maxPerRun": 1}
    )
    actions = [
        candidate("a", score=8.0),
        candidate("b", score=0.0),
        candidate("c", score=5.0),
        candidate("d", tickets=(KnownTicket("t", "incident", "1", "created", "INC1"),)),
        candidate("e", score=1.0),
    ]
    planned = plan(rule, actions, LABELS, taken=["e"])
    assert [a.id for a in planned.create] == ["b"]
    assert planned.over_cap == 2  # c, a
    assert [(s.action_id, s.reason) for s in planned.skipped] == [
        ("d", "open ticket INC1"),
        ("e", "another rule creates its ticket"),
    ]


def test_the_key_is_per_tenant_action_day_and_newest_ticket() -> None:
    day = date(2030, 1, 1)
    first = idempotency_key("t", candidate(), day)
    assert first == idempotency_key("t", candidate(), day)
    assert first.isascii()
    assert len(first) <= 100
    closed = candidate(tickets=(KnownTicket("t9", "incident", "7", "created"),))
    others = [
        idempotency_key("u", candidate(), day),
        idempotency_key("t", candidate("Other"), day),
        idempotency_key("t", candidate(), date(2030, 1, 2)),
        idempotency_key("t", closed, day),
    ]
    assert len({first, *others}) == 5
