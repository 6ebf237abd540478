"""The `push-hints` worker: coalescing, one read per table, only our records, only newer versions."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from shared.models import ConnectionStatus
from shared.push_models import PushHint, PushHintMessage
from shared.records import CORRELATION_DISPLAY, Connection
from shared.services.push_worker import PushWorker
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.push import InMemoryPushHooks, RecordingPushedStates
from tests.fakes.servicenow_tables import FakeServiceNowTables

TENANT = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"
TICKET_A = "9999998765432abcdef01"
TICKET_B = "9999998765431abcdef02"


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.connections = InMemoryConnectionRepository()
        self.servicenow = FakeServiceNowTables(self.clock)
        self.states = RecordingPushedStates()
        self.hooks = InMemoryPushHooks()
        self.worker = PushWorker(
            connections=self.connections,
            records=self.servicenow,
            changes=self.states,
            hooks=self.hooks,
            clock=self.clock,
        )
        for tenant in (TENANT, OTHER):
            self.connect(tenant)

    def connect(self, tenant_id: str, status: ConnectionStatus = ConnectionStatus.CONNECTED) -> None:
        self.connections.rows[tenant_id] = Connection(
            tenant_id=tenant_id,
            instance="contoso",
            instance_url="https://contoso.service-now.com",
            client_id="client",
            status=status,
            updated_at=self.clock.now(),
        )

    async def enable(self, tenant_id: str = TENANT) -> None:
        await self.hooks.replace_hook(tenant_id, f"hook-{tenant_id}", "v1")

    def record(self, table: str, ticket_id: str, state: str, mod_count: int, **extra: str) -> str:
        return self.servicenow.add(
            table, ticket_id, state, "2030-01-15 11:59:00", sys_mod_count=str(mod_count), **extra
        )

    def message(self, *hints: tuple[str, str], tenant_id: str = TENANT) -> PushHintMessage:
        return PushHintMessage(
            tenant_id=tenant_id,
            hints=[
                PushHint(table=t, sys_id=s, sys_mod_count=1, sys_updated_on="2030-01-15 11:59:00")
                for t, s in hints
            ],
            received_at=self.clock.now(),
        )


@pytest.fixture
async def world() -> World:
    world = World()
    await world.enable()
    return world


async def test_a_hint_reads_the_record_and_applies_its_state(world: World) -> None:
    sys_id = world.record("incident", TICKET_A, "2", 5)
    world.states.seed(TENANT, TICKET_A, "incident", sys_id, "1", 4)
    assert await world.worker.handle(world.message(("incident", sys_id))) == 1
    assert world.states.rows[(TENANT, TICKET_A)].state == "2"
    [(table, query)] = world.servicenow.requests
    assert table == "incident"
    assert f"correlation_display={CORRELATION_DISPLAY}" in query
    assert f"sys_idIN{sys_id}" in query
    [(_, [change])] = world.states.calls
    assert (change.ticket_id, change.sys_id, change.state, change.mod_count) == (TICKET_A, sys_id, "2", 5)


async def test_messages_of_one_tenant_within_the_window_are_one_read_per_table(world: World) -> None:
    a = world.record("incident", TICKET_A, "2", 5)
    b = world.record("incident", TICKET_B, "6", 9)
    c = world.record("change_request", "9999998765430abcdef03", "3", 2)
    results = await asyncio.gather(
        world.worker.handle(world.message(("incident", a))),
        world.worker.handle(world.message(("incident", b), ("incident", a))),
        world.worker.handle(world.message(("change_request", c))),
    )
    assert len(world.servicenow.requests) == 2  # incident and change_request, once each
    assert world.worker.reads == 2
    assert len(world.states.calls) == 1
    assert results[0] == results[1] == results[2]
    [(_, changes)] = world.states.calls
    assert sorted(c.sys_id for c in changes) == sorted([a, b, c])
    assert world.hooks.tenants[TENANT].hourly == {"2030011512": 3}  # three calls counted


async def test_a_message_after_the_window_starts_a_new_read(world: World) -> None:
    a = world.record("incident", TICKET_A, "2", 5)
    await world.worker.handle(world.message(("incident", a)))
    await world.worker.handle(world.message(("incident", a)))
    assert len(world.servicenow.requests) == 2


async def test_tenants_are_never_coalesced_together(world: World) -> None:
    await world.enable(OTHER)
    a = world.record("incident", TICKET_A, "2", 5)
    await asyncio.gather(
        world.worker.handle(world.message(("incident", a))),
        world.worker.handle(world.message(("incident", a), tenant_id=OTHER)),
    )
    assert sorted(tenant for tenant, _ in world.states.calls) == [TENANT, OTHER]


async def test_records_not_ours_are_dropped(world: World) -> None:
    foreign = world.servicenow.add("incident", TICKET_A, "2", "2030-01-15 11:59:00", sys_mod_count="5")
    world.servicenow.set("incident", foreign, correlation_display="Someone else")
    no_id = world.record("incident", "not-one-of-ours", "2", 5)
    world.states.seed(TENANT, TICKET_A, "incident", foreign, "1", 1)
    changed = await world.worker.handle(world.message(("incident", foreign), ("incident", no_id)))
    assert changed == 0
    assert world.states.calls == []  # nothing of ours to apply
    assert world.states.rows[(TENANT, TICKET_A)].state == "1"


async def test_a_record_of_another_ticket_is_not_applied_to_ours(world: World) -> None:
    copy = world.record("incident", TICKET_A, "7", 9)
    world.states.seed(TENANT, TICKET_A, "incident", "f" * 32, "1", 1)
    assert await world.worker.handle(world.message(("incident", copy))) == 0
    assert world.states.rows[(TENANT, TICKET_A)].state == "1"


async def test_an_older_or_equal_mod_count_is_not_applied(world: World) -> None:
    sys_id = world.record("incident", TICKET_A, "2", 5)
    world.states.seed(TENANT, TICKET_A, "incident", sys_id, "6", 7)
    assert await world.worker.handle(world.message(("incident", sys_id))) == 0
    world.servicenow.set("incident", sys_id, sys_mod_count="7", state="1")
    assert await world.worker.handle(world.message(("incident", sys_id))) == 0
    assert world.states.rows[(TENANT, TICKET_A)].state == "6"


async def test_a_duplicated_hint_changes_nothing_the_second_time(world: World) -> None:
    sys_id = world.record("incident", TICKET_A, "2", 5)
    world.states.seed(TENANT, TICKET_A, "incident", sys_id, "1", 4)
    message = world.message(("incident", sys_id))
    assert await world.worker.handle(message) == 1
    assert await world.worker.handle(message) == 0


async def test_hints_of_a_tenant_not_connected_are_dropped_unread(world: World) -> None:
    world.connect(TENANT, ConnectionStatus.REAUTHORIZATION_REQUIRED)
    sys_id = world.record("incident", TICKET_A, "2", 5)
    assert await world.worker.handle(world.message(("incident", sys_id))) == 0
    assert world.servicenow.requests == []


async def test_a_failed_read_fails_every_message_of_the_batch(world: World) -> None:
    a = world.record("incident", TICKET_A, "2", 5)
    world.servicenow.fail["incident"] = RuntimeError("ServiceNow is down")
    results = await asyncio.gather(
        world.worker.handle(world.message(("incident", a))),
        world.worker.handle(world.message(("incident", a))),
        return_exceptions=True,
    )
    assert all(isinstance(result, RuntimeError) for result in results)
    assert TENANT not in world.hooks.tenants or world.hooks.tenants[TENANT].hourly in (None, {})


async def test_the_counts_keep_the_last_push_and_the_hours(world: World) -> None:
    a = world.record("incident", TICKET_A, "2", 5)
    await world.worker.handle(world.message(("incident", a)))
    world.clock.advance(hours=2)
    await world.worker.handle(world.message(("incident", a)))
    tenant = world.hooks.tenants[TENANT]
    assert tenant.last_push_at == world.clock.now() - timedelta(seconds=0.25)
    assert sum((tenant.hourly or {}).values()) == 2
