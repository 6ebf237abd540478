"""The Secure Score check inside the sync, with fakes of all ports: it runs with the daily
reconciliation, normal runs write back only what they changed and only for tenants that turned it
on, and nothing the check meets (a 429, no Graph, a storage failure) fails the ServiceNow sync."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import UpstreamUnavailable
from shared.remediation import RemediationStatus
from shared.services.remediation_check import RemediationCheck
from shared.services.syncing import SyncService
from tests.fakes.remediation import RemediationWorld, action
from tests.fakes.secure_score import throttled
from tests.fakes.sync_world import NOW, TENANT, SyncWorld
from tests.fakes.tickets import UnconfiguredImprovementActions


@pytest.fixture
def world() -> SyncWorld:
    return SyncWorld.create()


@pytest.fixture
def graph(world: SyncWorld) -> RemediationWorld:
    """Secure Score for the sync world's tickets: two actions, the first at 0 points."""
    score = RemediationWorld.create(action("AdminMFAV2"), action("DLPEnabled"), tickets=world.tickets)
    score.score("AdminMFAV2", 0)
    return score


def service(world: SyncWorld, graph: RemediationWorld) -> SyncService:
    check = RemediationCheck(
        tickets=graph.rows,
        actions=graph.actions,
        writer=graph.graph,
        connections=world.connections,
        clock=world.clock,
    )
    return SyncService(
        connections=world.connections,
        tickets=world.tickets,
        tokens=world.tokens,
        records=world.servicenow,
        queue=world.queue,
        states=world.states,
        config=world.config,
        clock=world.clock,
        remediation=check,
    )


def action_ticket(world: SyncWorld, action_id: str, state: str = "1") -> str:
    ticket_id = world.ticket("incident", state, "2025-03-01 10:00:00")
    row = world.tickets.rows[(TENANT, ticket_id)]
    world.tickets.put(row.model_copy(update={"improvement_action_id": action_id}))
    return ticket_id


def change(world: SyncWorld, ticket_id: str, state: str) -> None:
    sys_id = world.sys_id("incident", ticket_id)
    world.servicenow.set("incident", sys_id, state=state, sys_updated_on="2025-03-01 11:30:00")


async def test_the_daily_reconciliation_checks_the_tenant(world: SyncWorld, graph: RemediationWorld) -> None:
    world.connect(last_reconciled_at=NOW - timedelta(days=2))
    ticket = action_ticket(world, "AdminMFAV2")
    outcome = await service(world, graph).sync_tenant(world.request())

    assert outcome.skipped is None
    row = world.tickets.rows[(TENANT, ticket)]
    assert (row.remediation_status, row.remediation_checked_at) == (RemediationStatus.IN_PROGRESS, NOW)
    assert world.row().remediation_checked_at == NOW
    assert world.row().last_reconciled_at == NOW
    assert (graph.actions.score_calls, graph.actions.list_calls) == (1, 1)


async def test_a_normal_run_with_the_write_back_off_costs_nothing_more(
    world: SyncWorld, graph: RemediationWorld
) -> None:
    world.connect()
    ticket = action_ticket(world, "AdminMFAV2")
    change(world, ticket, "2")
    await service(world, graph).sync_tenant(world.timer_request())

    assert world.tickets.state(TENANT, ticket) == "2"
    assert world.tickets.requests == ["merge"]
    assert world.connections.requests == ["write", "write"]  # the lease and the finish
    assert graph.rows.requests == []
    assert (graph.actions.score_calls, graph.actions.list_calls, graph.graph.attempts) == (0, 0, [])


async def test_a_normal_run_writes_back_the_tickets_it_changed(
    world: SyncWorld, graph: RemediationWorld
) -> None:
    world.connect(secure_score_write_back=True)
    ticket = action_ticket(world, "AdminMFAV2")
    action_ticket(world, "DLPEnabled")  # unchanged: not written back by this run
    change(world, ticket, "6")
    await service(world, graph).sync_tenant(world.timer_request())

    [patch] = graph.graph.patches
    assert (patch.control_id, patch.state) == ("AdminMFAV2", "Default")
    assert patch.comment.startswith(f"ServiceNow {world.tickets.rows[(TENANT, ticket)].number} (Resolved): ")
    assert world.tickets.rows[(TENANT, ticket)].write_back_comment == patch.comment
    assert graph.actions.calls == 1  # that control's profile, read before the PATCH


async def test_a_throttled_check_pauses_graph_but_not_the_sync(
    world: SyncWorld, graph: RemediationWorld
) -> None:
    world.connect(last_reconciled_at=NOW - timedelta(days=2), secure_score_write_back=True)
    ticket = action_ticket(world, "AdminMFAV2")
    change(world, ticket, "2")
    graph.graph.fail_next(throttled(300))
    outcome = await service(world, graph).sync_tenant(world.request())

    assert outcome.skipped is None
    assert world.tickets.state(TENANT, ticket) == "2"
    row = world.row()
    assert (row.last_sync_at, row.last_error, row.sync_lease_until) == (NOW, None, None)
    assert row.graph_not_before == NOW + timedelta(seconds=300)

    world.clock.advance(minutes=4)  # the next run, still inside Retry-After: ServiceNow yes, Graph no
    world.servicenow.set(
        "incident", world.sys_id("incident", ticket), state="6", sys_updated_on="2025-03-01 11:40:00"
    )
    await service(world, graph).sync_tenant(world.request())
    assert world.tickets.state(TENANT, ticket) == "6"
    assert len(graph.graph.attempts) == 1

    world.clock.advance(minutes=2)  # past Retry-After
    world.servicenow.set(
        "incident", world.sys_id("incident", ticket), state="7", sys_updated_on="2025-03-01 11:50:00"
    )
    await service(world, graph).sync_tenant(world.request())
    assert graph.graph.patches[-1].comment.split(" (")[1].startswith("Closed")


@pytest.mark.parametrize(
    "trouble",
    ["no graph", "storage", "bug"],
)
async def test_nothing_the_check_meets_fails_the_sync(
    world: SyncWorld, graph: RemediationWorld, trouble: str
) -> None:
    world.connect(last_reconciled_at=NOW - timedelta(days=2))
    ticket = action_ticket(world, "AdminMFAV2")
    change(world, ticket, "2")
    sync = service(world, graph)
    if trouble == "no graph":
        sync._tenant._remediation._actions = UnconfiguredImprovementActions()  # type: ignore[union-attr]
    elif trouble == "storage":
        graph.rows.fail_writes = UpstreamUnavailable("Table Storage is unavailable (update tickets).")
    else:
        graph.actions.failure = RuntimeError("a defect")

    outcome = await sync.sync_tenant(world.request())

    assert outcome.skipped is None
    assert world.tickets.state(TENANT, ticket) == "2"
    assert (world.row().last_sync_at, world.row().last_error) == (NOW, None)


async def test_a_daily_check_graph_paused_runs_again_once_the_pause_is_over(
    world: SyncWorld, graph: RemediationWorld
) -> None:
    world.connect(last_reconciled_at=NOW - timedelta(days=2))
    ticket = action_ticket(world, "AdminMFAV2")
    graph.actions.failure = UpstreamUnavailable("Microsoft Graph is throttling.", retry_after=120)
    await service(world, graph).sync_tenant(world.request())
    assert world.row().graph_not_before == NOW + timedelta(seconds=120)
    assert world.tickets.rows[(TENANT, ticket)].remediation_status is None  # not checked

    world.clock.advance(minutes=1)  # still paused: a normal run leaves Graph alone
    await service(world, graph).sync_tenant(world.request())
    assert graph.actions.list_calls == 1
    world.clock.advance(minutes=2)  # the pause is over: the check runs now, not a day later
    await service(world, graph).sync_tenant(world.request())
    assert world.tickets.rows[(TENANT, ticket)].remediation_status == RemediationStatus.IN_PROGRESS
    checks = graph.actions.list_calls
    world.clock.advance(minutes=5)  # checked: the next normal run does not check again
    await service(world, graph).sync_tenant(world.request())
    assert graph.actions.list_calls == checks
