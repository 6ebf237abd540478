"""The rules API's service over fakes: create or replace, the limit per tenant, delete, the
preview (which creates nothing), and what the bodies refuse."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.errors import Conflict, NotFound
from shared.models import ConnectionStatus
from shared.rule_models import MAX_RULES_PER_TENANT, RuleBody, RulePath, RulePreviewRequest
from tests.fakes.remediation import TENANT, RemediationWorld, action
from tests.fakes.rules import ADMIN, RulesWorld

TICKET = {"type": "incident", "priority": 3, "dueInDays": 14}


@pytest.fixture
def rules() -> RulesWorld:
    world = RemediationWorld.create(
        action("AdminMFAV2", 10.0, control_category="Identity"),
        action("MFARegistrationV2", 9.0, control_category="Identity"),
        action("DLPEnabled", 10.0, control_category="Data"),
    )
    for control in ("AdminMFAV2", "MFARegistrationV2", "DLPEnabled"):
        world.score(control, 0)
    return RulesWorld(world)


def body(**changes: Any) -> RuleBody:
    return RuleBody.model_validate({"name": "Identity", "ticket": TICKET, **changes})


async def test_put_creates_then_replaces_keeping_creation_and_last_run(rules: RulesWorld) -> None:
    view, created = await rules.service.put(ADMIN, "identity", body())
    assert created is True
    assert (view.id, view.updated_by, view.max_per_run, view.last_run) == ("identity", "Ada Admin", 25, None)
    await rules.daily()
    rules.world.clock.advance(hours=1)
    again, created = await rules.service.put(ADMIN, "identity", body(name="Renamed", enabled=False))
    assert created is False
    assert (again.name, again.enabled, again.created_at) == ("Renamed", False, view.created_at)
    assert again.updated_at > view.updated_at
    assert again.last_run is not None
    listed = await rules.service.list(TENANT)
    assert [r.id for r in listed.items] == ["identity"]
    assert listed.paused_until is None


async def test_a_tenant_has_at_most_the_limit_of_rules(rules: RulesWorld) -> None:
    for n in range(MAX_RULES_PER_TENANT):
        await rules.service.put(ADMIN, f"rule-{n}", body())
    with pytest.raises(Conflict):
        await rules.service.put(ADMIN, "one-more", body())
    _, created = await rules.service.put(ADMIN, "rule-0", body(name="Replacing is fine"))
    assert created is False


async def test_get_and_delete_an_unknown_rule_are_not_found(rules: RulesWorld) -> None:
    with pytest.raises(NotFound):
        await rules.service.get(TENANT, "nope")
    with pytest.raises(NotFound):
        await rules.service.delete(TENANT, "nope")
    await rules.service.put(ADMIN, "identity", body())
    await rules.service.delete(TENANT, "identity")
    assert (await rules.service.list(TENANT)).items == []


async def test_preview_answers_what_a_rule_would_create_and_creates_nothing(rules: RulesWorld) -> None:
    open_one = rules.world.ticket("AdminMFAV2", "2")
    request = RulePreviewRequest(rule=body(maxPerRun=1))
    preview = await rules.service.preview(TENANT, request)
    assert [a.action_id for a in preview.would_create] == ["DLPEnabled"]
    assert preview.would_create[0].points_to_gain == 10
    assert preview.over_cap == 1
    assert [(s.action_id, s.reason) for s in preview.skipped] == [("AdminMFAV2", "open ticket INC0010001")]
    assert preview.message is None
    assert rules.world.row(open_one).state == "2"
    assert rules.rule_tickets() == []
    assert rules.servicenow.creates == 0
    assert rules.store.rows == {}


async def test_preview_of_a_saved_rule_and_of_a_tenant_not_connected(rules: RulesWorld) -> None:
    await rules.service.put(ADMIN, "identity", body(match={"categories": ["Identity"]}))
    rules.world.connect(status=ConnectionStatus.REAUTHORIZATION_REQUIRED)
    preview = await rules.service.preview(TENANT, RulePreviewRequest(rule_id="identity"))
    assert [a.action_id for a in preview.would_create] == ["AdminMFAV2", "MFARegistrationV2"]
    assert "not connected" in (preview.message or "")
    with pytest.raises(NotFound):
        await rules.service.preview(TENANT, RulePreviewRequest(rule_id="other"))


@pytest.mark.parametrize(
    "changes",
    [
        {"name": ""},
        {"ticket": {**TICKET, "priority": 0}},
        {"ticket": {**TICKET, "dueInDays": 0}},
        {"ticket": {**TICKET, "recommendationSource": "user"}},
        {"ticket": {**TICKET, "type": "problem"}},
        {"maxPerRun": 0},
        {"maxPerRun": 101},
        {"match": {"categories": ["Devices2"]}},
        {"match": {"includeActionIds": ["."]}},
        {"match": {"minPointsToGain": -1}},
        {"match": {"minPointsToGain": True}},  # JSON true is not a number
        {"maxPerRun": True},
        {"unknown": 1},
    ],
)
def test_a_rule_body_refuses_bad_values(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RuleBody.model_validate({"name": "x", "ticket": TICKET, **changes})


@pytest.mark.parametrize("rule_id", ["Upper", "-dash", "dash-", "a" * 65, "a_b", "~state", "", "a/b"])
def test_a_rule_id_is_a_slug_or_a_guid(rule_id: str) -> None:
    with pytest.raises(ValidationError):
        RulePath.model_validate({"ruleId": rule_id})


def test_good_rule_ids() -> None:
    for rule_id in ("a", "identity-5", "3f0c2b9e-5d7a-4c1e-9b8f-6a2d4e1c7b55"):
        assert RulePath.model_validate({"ruleId": rule_id}).rule_id == rule_id


@pytest.mark.parametrize("data", [{}, {"ruleId": "a", "rule": {"name": "x", "ticket": TICKET}}])
def test_a_preview_takes_exactly_one_rule(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RulePreviewRequest.model_validate(data)
