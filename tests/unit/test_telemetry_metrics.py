"""The metrics the services emit (docs/telemetry.md lists them; alerts are built on the names):
ticket creates by type and outcome, the sync's runs, changes and lag, the timer's connections."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import BadRequest
from shared.models import ConnectionStatus
from tests.fakes.sync_world import NOW, TENANT, SyncWorld, W
from tests.telemetry_capture import capturing
from tests.unit.test_sync_fanout import fanout
from tests.unit.test_ticketing_service import CALLER, World, request


async def test_ticket_creates_are_counted_by_type_and_outcome_and_timed() -> None:
    world = World()
    with capturing() as capture:
        await world.create(key="k-1")
        await world.create(key="k-1")
        await world.create(key="k-2", type="change_request")
        with pytest.raises(BadRequest):
            await world.service.create(CALLER, request(dueDate="2020-01-01"), "k-3")
    created = "connector.tickets.created"
    assert capture.total(created, type="incident", outcome="created") == 1
    assert capture.total(created, type="incident", outcome="existing") == 1
    assert capture.total(created, type="change_request", outcome="created") == 1
    assert capture.total(created, type="incident", outcome="validation_error") == 1
    durations = capture.points("connector.ticket.create.duration")
    assert sum(point.count for _, point in durations) == 4
    assert {attributes["outcome"] for attributes, _ in durations} == {
        "created",
        "existing",
        "validation_error",
    }


async def test_a_sync_run_counts_its_outcome_changes_and_the_lag_of_what_it_saw_first() -> None:
    world = SyncWorld.create()
    world.connect()
    seen_before = world.ticket("incident", "1", "2025-03-01 10:00:00")
    fresh = world.ticket("change_request", "-5", "2025-03-01 10:30:00")
    world.servicenow.set("incident", world.sys_id("incident", seen_before), state="2", sys_updated_on=W)
    world.servicenow.set(
        "change_request",
        world.sys_id("change_request", fresh),
        state="-1",
        sys_updated_on="2025-03-01 11:30:00",
    )
    with capturing() as capture:
        outcome = await world.sync()
        world.connect(tenant_id=TENANT, status="reauthorization_required")
        await world.sync()
    assert outcome.changed >= 1
    assert capture.total("connector.sync.runs", outcome="synced") == 1
    assert capture.total("connector.sync.runs", outcome="skipped") == 1
    assert capture.total("connector.sync.records_changed") == outcome.changed
    [(_, lag)] = capture.points("connector.sync.lag")
    # Only the version newer than the run's watermark (W, 11:00) is new to it: 11:30 seen at 12:00.
    assert (lag.count, lag.sum) == (1, 1800.0)
    assert sum(point.count for _, point in capture.points("connector.sync.duration")) == 2


async def test_the_timer_reports_tenants_by_status_and_refresh_tokens_about_to_expire() -> None:
    world = SyncWorld.create()
    for number, days_left in enumerate((3, 13, 20, 90)):
        world.connect(
            tenant_id=f"00000000-0000-0000-0000-00000000000{number}",
            refresh_token_expires_at=NOW + timedelta(days=days_left),
        )
    world.connect(
        tenant_id="10000000-0000-0000-0000-000000000001", status=ConnectionStatus.REAUTHORIZATION_REQUIRED
    )
    for n in (2, 3):
        world.connect(
            tenant_id=f"10000000-0000-0000-0000-00000000000{n}", status=ConnectionStatus.PENDING_AUTHORIZATION
        )
    with capturing() as capture:
        assert await fanout(world, world.queue).enqueue_connected() == 4
    by_status = {
        attributes["status"]: point.value for attributes, point in capture.points("connector.connections")
    }
    assert by_status == {"connected": 4, "reauthorization_required": 1, "pending_authorization": 2}
    [(_, expiring)] = capture.points("connector.refresh_tokens.expiring")
    assert expiring.value == 2
