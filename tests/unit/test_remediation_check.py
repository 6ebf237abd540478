"""The daily Secure Score check with fakes of its ports (no I/O): each status and flag as it moves
from check to check, what is read and written, and when Graph is not asked at all."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import DependencyNotConfigured, UpstreamUnavailable
from shared.remediation import DEFAULT_GRACE, RemediationChange, RemediationStatus
from tests.fakes.remediation import NOW, TENANT, RemediationWorld, action
from tests.fakes.tickets import UnconfiguredImprovementActions

S = RemediationStatus


@pytest.fixture
def world() -> RemediationWorld:
    return RemediationWorld.create(action("AdminMFAV2"), action("DLPEnabled", 8.0))


async def check(world: RemediationWorld, grace: timedelta = DEFAULT_GRACE) -> None:
    await world.check(grace).check_tenant(world.connection())


async def test_an_action_moves_through_in_progress_completed_and_regressed(world: RemediationWorld) -> None:
    ticket = world.ticket("AdminMFAV2")
    world.score("AdminMFAV2", 0)
    await check(world)
    first = world.row(ticket)
    assert (first.remediation_status, first.remediation_score, first.remediation_max_score) == (
        S.IN_PROGRESS,
        0.0,
        10.0,
    )
    assert first.remediation_checked_at == world.clock.now()
    assert (first.remediated_while_open, first.regressed, first.closed_without_remediation) == (
        False,
        False,
        False,
    )

    world.clock.advance(days=1)
    world.score("AdminMFAV2", 10)
    await check(world)
    done = world.row(ticket)
    assert (done.remediation_status, done.remediation_completed_at) == (S.COMPLETED, world.clock.now())
    assert done.remediated_while_open is True  # the ticket is still open

    completed_at = world.clock.now()
    world.clock.advance(days=1)
    world.score("AdminMFAV2", 4)
    await check(world)
    dropped = world.row(ticket)
    assert (dropped.remediation_status, dropped.regressed, dropped.remediated_while_open) == (
        S.IN_PROGRESS,
        True,
        False,
    )
    assert dropped.remediation_completed_at == completed_at  # the first completion is kept

    world.clock.advance(days=1)
    world.score("AdminMFAV2", 10)
    await check(world)
    again = world.row(ticket)
    assert (again.remediation_status, again.regressed, again.remediation_completed_at) == (
        S.COMPLETED,
        False,
        completed_at,
    )


async def test_full_points_through_a_third_party_state_are_not_a_completion(world: RemediationWorld) -> None:
    ticket = world.ticket("AdminMFAV2", "7")
    world.score("AdminMFAV2", 10)
    world.set_state("AdminMFAV2", "ThirdParty", "Handled by our MSSP")
    await check(world)
    row = world.row(ticket)
    assert (row.remediation_status, row.remediation_completed_at) == (S.RESOLVED_BY_EXCEPTION, None)
    assert (row.remediated_while_open, row.regressed, row.closed_without_remediation) == (False, False, False)


async def test_unscored_unknown_and_deprecated_controls(world: RemediationWorld) -> None:
    world.actions.actions["Old"] = action("Old", deprecated=True)
    unscored = world.ticket("DLPEnabled")  # a profile without a score (unlicensed)
    gone = world.ticket("NoSuchControl")  # neither profile nor score
    deprecated = world.ticket("Old")
    world.score("Old", 10)
    await check(world)
    assert world.row(unscored).remediation_status is S.UNKNOWN
    assert world.row(unscored).remediation_max_score == 8.0
    assert (world.row(gone).remediation_status, world.row(gone).remediation_max_score) == (S.UNKNOWN, None)
    assert world.row(deprecated).remediation_status is S.NOT_APPLICABLE


async def test_a_ticket_closed_without_the_points_is_flagged_after_the_grace_and_cleared_when_done(
    world: RemediationWorld,
) -> None:
    ticket = world.ticket("AdminMFAV2")
    world.score("AdminMFAV2", 0)
    world.clock.advance(days=2)
    world.move(ticket, "6")  # resolved in ServiceNow
    resolved_at = world.clock.now()
    world.clock.advance(hours=1)
    await check(world)
    assert (world.row(ticket).closed_at, world.row(ticket).closed_without_remediation) == (resolved_at, False)

    world.clock.advance(days=2)
    world.move(ticket, "7")  # closed later: still closed since it was resolved
    world.clock.advance(days=5)
    await check(world)
    flagged = world.row(ticket)
    assert (flagged.closed_at, flagged.closed_without_remediation) == (resolved_at, True)

    world.clock.advance(days=1)
    world.score("AdminMFAV2", 10)
    await check(world)
    fixed = world.row(ticket)
    assert (fixed.remediation_status, fixed.closed_without_remediation, fixed.remediated_while_open) == (
        S.COMPLETED,
        False,
        False,
    )


async def test_the_grace_is_the_checks_to_choose(world: RemediationWorld) -> None:
    ticket = world.ticket("AdminMFAV2", "8")  # cancelled
    world.score("AdminMFAV2", 0)
    world.clock.advance(hours=3)
    await check(world, grace=timedelta(hours=2))
    assert world.row(ticket).closed_without_remediation is True


async def test_a_ticket_open_again_loses_its_closing_time_and_gets_a_new_one(world: RemediationWorld) -> None:
    ticket = world.ticket("AdminMFAV2")
    world.score("AdminMFAV2", 0)
    world.move(ticket, "6")
    first_close = world.clock.now()
    world.clock.advance(days=8)
    await check(world)
    assert (world.row(ticket).closed_at, world.row(ticket).closed_without_remediation) == (first_close, True)

    world.move(ticket, "2")  # reopened
    world.clock.advance(days=1)
    await check(world)
    assert (world.row(ticket).closed_at, world.row(ticket).closed_without_remediation) == (None, False)
    assert "replace" in world.rows.requests  # a merge cannot take a value away

    world.move(ticket, "6")
    second_close = world.clock.now()
    world.clock.advance(days=1)
    await check(world)
    assert (world.row(ticket).closed_at, world.row(ticket).closed_without_remediation) == (
        second_close,
        False,
    )


async def test_a_state_the_instance_added_counts_as_closed_by_its_label(world: RemediationWorld) -> None:
    world.connect(instance_state_labels={"incident": {"20": "Closed - Duplicate"}})
    ticket = world.ticket("AdminMFAV2", "20")
    world.score("AdminMFAV2", 0)
    world.clock.advance(days=8)
    await check(world)
    assert world.row(ticket).closed_without_remediation is True


async def test_only_rows_whose_result_changed_are_written_in_batches_of_100(world: RemediationWorld) -> None:
    tickets = [world.ticket("AdminMFAV2") for _ in range(250)]
    other = world.ticket(None)  # not made for an action: never read, never written
    world.score("AdminMFAV2", 0)
    await check(world)
    assert world.rows.requests == ["read", "merge", "merge", "merge"]
    assert world.connection().remediation_checked_at == world.clock.now()
    assert world.row(other).remediation_status is None

    world.clock.advance(days=1)
    world.rows.requests.clear()
    await check(world)
    assert world.rows.requests == ["read"]  # nothing changed: nothing written
    assert world.connection().remediation_checked_at == world.clock.now()
    assert world.row(tickets[0]).remediation_checked_at == NOW + timedelta(seconds=251)  # the result's

    world.clock.advance(days=1)
    world.move(tickets[0], "2")  # a state change alone changes no result
    world.score("AdminMFAV2", 3)  # a score does, on every row
    world.rows.requests.clear()
    await check(world)
    assert world.rows.requests == ["read", "merge", "merge", "merge"]
    assert world.row(tickets[-1]).remediation_score == 3.0


async def test_tickets_without_a_record_are_not_checked(world: RemediationWorld) -> None:
    creating = world.ticket("AdminMFAV2", status="creating", sys_id="", number="", state="")
    failed = world.ticket("AdminMFAV2", status="failed", sys_id="", number="", state="")
    await check(world)
    assert world.row(creating).remediation_status is None
    assert world.row(failed).remediation_status is None
    assert world.rows.requests == ["read"]


async def test_a_tenant_without_tickets_for_actions_costs_graph_nothing(world: RemediationWorld) -> None:
    world.ticket(None)
    outcome = await world.check().check_tenant(world.connection())
    assert outcome.skipped is not None
    assert (world.actions.score_calls, world.actions.list_calls) == (0, 0)
    assert world.rows.requests == ["read"]
    assert world.connection().remediation_checked_at is None


async def test_one_score_read_and_one_listing_per_check(world: RemediationWorld) -> None:
    for _ in range(3):
        world.ticket("AdminMFAV2")
        world.ticket("DLPEnabled")
    await check(world)
    assert (world.actions.score_calls, world.actions.list_calls, world.actions.calls) == (1, 1, 0)


async def test_nothing_is_read_while_graph_asked_to_wait(world: RemediationWorld) -> None:
    world.ticket("AdminMFAV2")
    world.connect(graph_not_before=NOW + timedelta(hours=1))
    outcome = await world.check().check_tenant(world.connection())
    assert "wait" in (outcome.skipped or "")
    assert world.rows.requests == []
    assert (world.actions.score_calls, world.actions.list_calls) == (0, 0)


async def test_graph_unavailable_for_the_reads_pauses_the_tenant_and_writes_nothing(
    world: RemediationWorld,
) -> None:
    ticket = world.ticket("AdminMFAV2")
    world.actions.failure = UpstreamUnavailable("throttled", retry_after=90, hinted=True)
    outcome = await world.check().check_tenant(world.connection())
    assert outcome.paused_until == world.clock.now() + timedelta(seconds=90)
    assert world.connection().graph_not_before == outcome.paused_until
    assert world.connection().remediation_checked_at is None
    assert world.row(ticket).remediation_status is None


async def test_without_graph_the_check_says_so(world: RemediationWorld) -> None:
    world.ticket("AdminMFAV2")
    check_without = world.check()
    check_without._actions = UnconfiguredImprovementActions()
    with pytest.raises(DependencyNotConfigured):
        await check_without.check_tenant(world.connection())


async def test_a_ticket_deleted_meanwhile_is_not_made_again(world: RemediationWorld) -> None:
    ticket = world.ticket("AdminMFAV2")
    rows = await world.rows.action_tickets(TENANT)
    del world.tickets.rows[(TENANT, ticket)]
    assert await world.rows.write(TENANT, [RemediationChange(rows[0].ticket_id, {"regressed": True})]) == 0
    assert world.tickets.rows == {}


async def test_the_outcome_counts_statuses_and_flags(world: RemediationWorld) -> None:
    world.ticket("AdminMFAV2", "7")
    world.ticket("DLPEnabled")
    world.score("AdminMFAV2", 0)
    world.score("DLPEnabled", 8)
    world.clock.advance(days=8)
    outcome = await world.check().check_tenant(world.connection())
    assert dict(outcome.statuses) == {"in_progress": 1, "completed": 1}
    assert outcome.flags["closed_without_remediation"] == 1
    assert outcome.flags["remediated_while_open"] == 1
    assert outcome.written == 2
    assert "closed_without_remediation 1" in outcome.summary()


async def test_a_ticket_deleted_in_servicenow_keeps_its_check_but_no_flag() -> None:
    world = RemediationWorld.create(action("AdminMFAV2"))
    gone = world.ticket("AdminMFAV2", "2", deleted_in_servicenow_at=world.clock.now())
    world.score("AdminMFAV2", 10)  # done while the (deleted) ticket was open
    await world.check().check_tenant(world.connection())
    row = world.row(gone)
    assert row.remediation_status == RemediationStatus.COMPLETED
    assert (row.remediated_while_open, row.closed_without_remediation, row.regressed) == (False, False, False)
