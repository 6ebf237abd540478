"""The `rules` table on Azurite: rules round-trip with their JSON columns, conditional writes,
`lastRun` merged only into rows that exist, and the tenant's pause row kept out of the list."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from shared.errors import PreconditionFailed
from shared.models import CreateTicket
from shared.rule_models import CreatedTicket, RuleBody, RuleRun, SkippedAction
from shared.rule_ports import HeldCreate, RuleRecord
from shared.stores.rules import RuleRepository
from shared.stores.tables import TableStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
RULE = RuleBody.model_validate(
    {
        "name": "Identity",
        "match": {
            "categories": ["Identity"],
            "minPointsToGain": 2.5,
            "excludeActionIds": ["SigninRiskPolicy"],
        },
        "ticket": {"type": "change_request", "priority": 2, "dueInDays": 30},
        "maxPerRun": 5,
    }
)


def record(tenant: str, rule_id: str, **changes: object) -> RuleRecord:
    base = RuleRecord(
        tenant_id=tenant, rule_id=rule_id, rule=RULE, created_at=NOW, updated_at=NOW, updated_by="Ada"
    )
    return base.model_copy(update=changes)


async def test_a_rule_round_trips_and_writes_are_conditional(store: TableStore) -> None:
    repo = RuleRepository(store)
    saved = await repo.put(record("t1", "identity"))
    loaded = await repo.get("t1", "identity")
    assert loaded is not None
    assert loaded.model_dump(exclude={"etag"}) == saved.model_dump(exclude={"etag"})
    with pytest.raises(PreconditionFailed):
        await repo.put(record("t1", "identity"))  # new, but the row exists
    replaced = await repo.put(loaded.model_copy(update={"updated_by": "Bob"}))
    with pytest.raises(PreconditionFailed):
        await repo.put(loaded.model_copy(update={"updated_by": "Carol"}))  # stale ETag
    assert (await repo.get("t1", "identity")).updated_by == "Bob"  # type: ignore[union-attr]
    assert replaced.etag != loaded.etag


async def test_runs_merge_into_existing_rules_only_and_the_state_row_is_not_a_rule(store: TableStore) -> None:
    repo = RuleRepository(store)
    await repo.put(record("t1", "b-rule"))
    await repo.put(record("t1", "a-rule"))
    await repo.put(record("t2", "a-rule"))
    run = RuleRun(
        at=NOW,
        outcome="capped",
        message="Capped at 5.",
        created=[CreatedTicket(action_id="AdminMFAV2", ticket_id="x", number="INC0010001")],
        skipped=[SkippedAction(action_id="DLPEnabled", reason="open ticket INC0010002")],
        skipped_count=1,
        over_cap=3,
    )
    await repo.record_runs("t1", {"a-rule": run, "gone": run})
    await repo.pause("t1", NOW + timedelta(minutes=5), "ServiceNow is rate limiting")

    rules = await repo.list("t1")
    assert [r.rule_id for r in rules] == ["a-rule", "b-rule"]
    assert rules[0].last_run == run
    assert rules[0].rule == RULE  # the merge left the rule alone
    assert rules[1].last_run is None
    assert await repo.get("t1", "gone") is None
    state = await repo.state("t1")
    assert state.paused_until == NOW + timedelta(minutes=5)
    assert (await repo.state("t2")).paused_until is None
    assert await repo.get("t1", "~state") is None

    assert await repo.delete("t1", "a-rule") is True
    assert await repo.delete("t1", "a-rule") is False
    assert [r.rule_id for r in await repo.list("t1")] == ["b-rule"]


async def test_held_creates_round_trip_beside_the_rules_and_are_never_listed_as_rules(
    store: TableStore,
) -> None:
    rules = RuleRepository(store)
    tenant = "held-tenant"
    await rules.put(record(tenant, "identity"))
    request = CreateTicket(
        type="incident",
        priority=2,
        due_date=date(2030, 1, 31),
        recommendation_source="microsoft",
        improvement_action_id="AdminMFAV2",
    )
    entry = HeldCreate(
        tenant_id=tenant, action_id="AdminMFAV2", rule_id="identity", created_by_name="Rule: Identity",
        idempotency_key="rule-" + "a" * 64, request_json=request.model_dump_json(by_alias=True), held_at=NOW,
    )  # fmt: skip
    await rules.hold(entry)
    await rules.hold(entry.model_copy(update={"held_at": NOW + timedelta(minutes=1)}))  # the same action

    [held] = await rules.held(tenant)
    assert (held.action_id, held.idempotency_key) == ("AdminMFAV2", entry.idempotency_key)
    assert CreateTicket.model_validate_json(held.request_json) == request
    assert [r.rule_id for r in await rules.list(tenant)] == ["identity"]
    assert await rules.held("another-tenant") == []
    await rules.release(tenant, "AdminMFAV2")
    await rules.release(tenant, "AdminMFAV2")  # gone already: no error
    assert await rules.held(tenant) == []
