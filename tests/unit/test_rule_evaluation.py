"""The daily evaluation of rules, run by the daily Secure Score check's hook over fakes: what it
creates, what it never creates twice, the cap, the pause after a 429, a tenant not connected, and
that it asks Graph nothing beyond the check's read."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from shared.models import ConnectionStatus
from shared.services.ticket_policy import TicketingPolicy
from tests.fakes.remediation import TENANT, RemediationWorld, action
from tests.fakes.rules import RulesWorld


@pytest.fixture
def rules() -> RulesWorld:
    world = RemediationWorld.create(
        action("AdminMFAV2", 10.0, control_category="Identity"),
        action("MFARegistrationV2", 9.0, control_category="Identity"),
        action("SigninRiskPolicy", 7.0, control_category="Identity"),
        action("DLPEnabled", 10.0, control_category="Data"),
        action("PWAgePolicyNew", 8.0, control_category="Identity", deprecated=True),
        action("scid_2000", 9.0, control_category="Identity"),
    )
    for control in ("AdminMFAV2", "MFARegistrationV2", "DLPEnabled", "PWAgePolicyNew", "scid_2000"):
        world.score(control, 0)
    world.score("SigninRiskPolicy", 7)  # done: nothing left to gain
    return RulesWorld(world)


def numbers(rules: RulesWorld) -> list[str]:
    return sorted(t.improvement_action_id or "" for t in rules.rule_tickets())


async def test_a_rule_creates_one_ticket_per_matching_action_and_never_a_second(rules: RulesWorld) -> None:
    await rules.put("identity", match={"categories": ["Identity"]})
    await rules.daily()
    assert numbers(rules) == ["AdminMFAV2", "MFARegistrationV2"]  # not done, not deprecated, no device
    made = rules.rule_tickets()
    assert {t.created_by_name for t in made} == {"Rule: identity"}
    assert {t.priority for t in made} == {3}
    assert {t.due_date for t in made} == {rules.world.clock.now().date() + timedelta(days=14)}
    run = await rules.last_run("identity")
    assert (run.outcome, [c.action_id for c in run.created]) == (
        "completed",
        ["AdminMFAV2", "MFARegistrationV2"],
    )

    await rules.daily()  # the same day
    rules.world.clock.advance(days=1)
    await rules.daily()  # the next day: the tickets are open
    assert len(rules.rule_tickets()) == 2
    assert rules.servicenow.creates == 2
    run = await rules.last_run("identity")
    assert run.created == []
    assert {s.reason.split(" INC")[0] for s in run.skipped} == {"open ticket"}


async def test_the_evaluation_asks_graph_nothing_beyond_the_check_read(rules: RulesWorld) -> None:
    await rules.put("identity", match={"categories": ["Identity"]})
    await rules.daily()
    graph = rules.world.actions
    assert (graph.list_calls, graph.score_calls, graph.calls) == (1, 1, 0)
    assert len(rules.rule_tickets()) == 2


async def test_a_tenant_without_action_tickets_is_read_only_for_an_enabled_rule(rules: RulesWorld) -> None:
    graph = rules.world.actions
    await rules.daily()
    assert graph.list_calls == 0
    await rules.put("off", enabled=False)
    await rules.daily()
    assert graph.list_calls == 0
    await rules.put("on", match={"includeActionIds": ["DLPEnabled"]})
    await rules.daily()
    assert graph.list_calls == 1
    assert numbers(rules) == ["DLPEnabled"]


async def test_a_closed_ticket_whose_action_regressed_gets_a_new_one_the_same_day(rules: RulesWorld) -> None:
    await rules.put("mfa", match={"includeActionIds": ["AdminMFAV2"]})
    await rules.daily()
    [first] = rules.rule_tickets()
    rules.world.score("AdminMFAV2", 10)
    rules.world.move(first.ticket_id, "7")  # closed: done
    await rules.daily()
    assert len(rules.rule_tickets()) == 1  # done: nothing to gain

    rules.world.score("AdminMFAV2", 4)
    await rules.daily()  # the check flags it regressed; the rule makes a new ticket
    assert rules.world.row(first.ticket_id).regressed is True
    tickets = rules.rule_tickets()
    assert len(tickets) == 2
    assert rules.servicenow.creates == 2


async def test_the_cap_holds_and_the_rest_waits_for_a_later_run(rules: RulesWorld) -> None:
    await rules.put("all", maxPerRun=2, match={"includeDeviceControls": True})
    await rules.daily()
    assert numbers(rules) == ["AdminMFAV2", "DLPEnabled"]  # most points first, then by id
    run = await rules.last_run("all")
    assert (run.outcome, run.over_cap) == ("capped", 2)
    rules.world.clock.advance(days=1)
    await rules.daily()
    assert numbers(rules) == ["AdminMFAV2", "DLPEnabled", "MFARegistrationV2", "scid_2000"]


async def test_a_doubled_evaluation_creates_each_ticket_once(rules: RulesWorld) -> None:
    await rules.put("identity", match={"categories": ["Identity"]})
    await rules.put(
        "also-identity",
        match={"categories": ["Identity"]},
        ticket={"type": "incident", "priority": 1, "dueInDays": 3},
    )
    await asyncio.gather(rules.daily(), rules.daily(), rules.daily())
    assert numbers(rules) == ["AdminMFAV2", "MFARegistrationV2"]
    assert rules.servicenow.creates == 2


async def test_two_rules_never_make_two_tickets_for_one_action(rules: RulesWorld) -> None:
    await rules.put("a-first", match={"includeActionIds": ["AdminMFAV2"]})
    await rules.put("b-second", match={"categories": ["Identity"]})
    await rules.daily()
    assert numbers(rules) == ["AdminMFAV2", "MFARegistrationV2"]
    second = await rules.last_run("b-second")
    assert [c.action_id for c in second.created] == ["MFARegistrationV2"]
    assert [s.action_id for s in second.skipped] == ["AdminMFAV2"]


async def test_a_tenant_that_must_reauthorize_creates_nothing_and_says_so(rules: RulesWorld) -> None:
    await rules.put("identity", match={"categories": ["Identity"]})
    rules.world.connect(status=ConnectionStatus.REAUTHORIZATION_REQUIRED)
    await rules.daily()
    assert rules.rule_tickets() == []
    run = await rules.last_run("identity")
    assert run.outcome == "not_connected"
    assert "re-authorization" in (run.message or "")


async def test_a_servicenow_429_pauses_the_tenant_until_retry_after(rules: RulesWorld) -> None:
    await rules.put("identity", match={"categories": ["Identity"]})
    rules.servicenow.rate_limit_retry_after = 3600
    rules.servicenow.outcomes = ["rate_limited"] * 10
    await rules.daily()
    assert rules.rule_tickets() == []
    state = await rules.store.state(TENANT)
    assert state.paused_until is not None
    assert state.paused_until >= rules.world.clock.now() + timedelta(minutes=59)
    run = await rules.last_run("identity")
    assert (run.outcome, run.over_cap) == ("paused", 2)

    rules.servicenow.outcomes = []
    await rules.daily()  # still paused: nothing is tried
    assert (await rules.last_run("identity")).outcome == "paused"
    assert rules.rule_tickets() == []
    rules.world.clock.advance(hours=2)
    await rules.daily()
    assert numbers(rules) == ["AdminMFAV2", "MFARegistrationV2"]


async def test_a_rule_deleted_during_its_run_stays_deleted(rules: RulesWorld) -> None:
    await rules.put("identity", match={"categories": ["Identity"]})
    runs = await rules.service.evaluation.evaluate(
        rules.world.connection(),
        await rules.store.list(TENANT),
        await rules.world.actions.control_scores(TENANT),
        await rules.world.actions.list_improvement_actions(TENANT),
    )
    await rules.service.delete(TENANT, "identity")
    await rules.store.record_runs(TENANT, runs)
    assert await rules.store.list(TENANT) == []


async def test_no_create_starts_once_the_run_time_is_up(rules: RulesWorld) -> None:
    await rules.put("all", match={"includeDeviceControls": True})
    rules.servicenow.on_the_wire = lambda: rules.world.clock.advance(minutes=2)  # a slow ServiceNow
    await rules.daily()
    assert numbers(rules) == ["AdminMFAV2", "DLPEnabled"]
    run = await rules.last_run("all")
    assert (run.outcome, run.over_cap) == ("capped", 2)
    assert "time was up" in (run.message or "")


async def test_a_create_whose_end_was_not_seen_is_sent_again_with_its_key_and_made_once(
    rules: RulesWorld,
) -> None:
    await rules.put("mfa", match={"includeActionIds": ["AdminMFAV2"]})
    # ServiceNow makes the record and answers after the create's deadline: the create ends in a
    # 503 with no ticket row, and only the same key and body can find the record again.
    rules.policy = TicketingPolicy(create_deadline_s=0.2)
    rules.servicenow.outcomes = ["made_then_hang"]
    await rules.daily()
    assert [entry.action_id for entry in rules.store.held_rows.values()] == ["AdminMFAV2"]
    assert (await rules.last_run("mfa")).outcome == "paused"

    rules.world.clock.advance(days=1)  # another day: a new create would have another key
    await rules.daily()

    assert numbers(rules) == ["AdminMFAV2"]
    made = [r for records in rules.servicenow.records.values() for r in records]
    assert len(made) == 1  # found again, not made twice
    assert rules.store.held_rows == {}
    assert [c.action_id for c in (await rules.last_run("mfa")).created] == ["AdminMFAV2"]


async def test_a_refused_create_is_released_and_reported(rules: RulesWorld) -> None:
    await rules.put("mfa", match={"includeActionIds": ["AdminMFAV2"]})
    rules.servicenow.outcomes = ["rejected"]
    await rules.daily()
    run = await rules.last_run("mfa")
    assert [e.action_id for e in run.errors] == ["AdminMFAV2"]
    assert rules.store.held_rows == {}
