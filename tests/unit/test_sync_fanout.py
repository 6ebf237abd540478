"""The timer's fan-out when sends fail: retried with backoff, a tenant that still fails is reported
by id and the others are all sent; sends stay within the bound and overlap the listing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.errors import SyncEnqueueFailed, UpstreamUnavailable
from shared.models import ConnectionStatus
from shared.ports import ConnectionStore, MessageQueue
from shared.records import Connection
from shared.services.sync_fanout import ENQUEUE_CONCURRENCY, SEND_ATTEMPTS, SyncFanout
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.sync import FlakyQueue
from tests.fakes.sync_world import SyncWorld

TENANTS = [f"{n:08d}-0000-0000-0000-000000000000" for n in range(200)]


@pytest.fixture
def world() -> SyncWorld:
    world = SyncWorld.create()
    for tenant in TENANTS:
        world.connect(tenant)
    return world


def fanout(world: SyncWorld, queue: MessageQueue, connections: ConnectionStore | None = None) -> SyncFanout:
    return SyncFanout(
        connections=connections or world.connections,
        queue=queue,
        states=world.states,
        config=world.config,
        clock=world.clock,
    )


def sent(world: SyncWorld) -> Counter[str]:
    return Counter(json.loads(body)["tenantId"] for body in world.queue.bodies)


async def test_transient_failures_are_retried_and_every_tenant_is_sent_once(world: SyncWorld) -> None:
    queue = FlakyQueue(world.queue)
    queue.fail_before = {TENANTS[3]: 1, TENANTS[150]: SEND_ATTEMPTS - 1}

    assert await fanout(world, queue).enqueue_connected() == len(TENANTS)

    assert sent(world) == Counter(TENANTS)
    assert queue.attempts[TENANTS[150]] == SEND_ATTEMPTS
    assert sorted(s for s in world.clock.slept if s > 0) == [0.5, 0.5, 1.0]  # backing off, on the Clock


async def test_a_tenant_that_keeps_failing_is_reported_and_the_others_are_all_sent(
    world: SyncWorld, caplog: pytest.LogCaptureFixture
) -> None:
    queue = FlakyQueue(world.queue)
    lost = [TENANTS[0], TENANTS[77], TENANTS[199]]
    queue.fail_before = dict.fromkeys(lost, 99)

    with caplog.at_level(logging.INFO), pytest.raises(SyncEnqueueFailed) as raised:
        await fanout(world, queue).enqueue_connected()

    assert sent(world) == Counter(t for t in TENANTS if t not in lost)
    assert all(queue.attempts[t] == SEND_ATTEMPTS for t in lost)
    assert raised.value.message.startswith(f"3 of {len(TENANTS)} sync messages could not be queued")
    for tenant in lost:
        assert tenant in raised.value.message
        assert f"Could not queue a sync for tenant {tenant} ({SEND_ATTEMPTS} attempt(s))" in caplog.text
    assert f"Queued a timer sync for {len(TENANTS) - 3} connected tenant(s)" in caplog.text


async def test_a_lost_answer_is_retried_and_may_duplicate_the_message(world: SyncWorld) -> None:
    queue = FlakyQueue(world.queue)
    queue.fail_after = {TENANTS[5]: 1}

    assert await fanout(world, queue).enqueue_connected() == len(TENANTS)

    assert sent(world) == Counter(TENANTS) + Counter([TENANTS[5]])  # the worker drops the duplicate


async def test_an_error_that_is_not_unavailability_is_not_retried(world: SyncWorld) -> None:
    class Broken(FlakyQueue):
        async def send(self, body: str, *, delay_s: int = 0) -> None:
            if json.loads(body)["tenantId"] == TENANTS[9]:
                self.attempts[TENANTS[9]] = self.attempts.get(TENANTS[9], 0) + 1
                raise ValueError("not a queue message")
            await super().send(body, delay_s=delay_s)

    queue = Broken(world.queue)
    with pytest.raises(SyncEnqueueFailed):
        await fanout(world, queue).enqueue_connected()

    assert queue.attempts[TENANTS[9]] == 1
    assert len(world.queue.bodies) == len(TENANTS) - 1


async def test_sends_stay_within_the_bound(world: SyncWorld) -> None:
    queue = FlakyQueue(world.queue)
    queue.fail_before = dict.fromkeys(TENANTS[::7], 1)

    await fanout(world, queue).enqueue_connected()

    assert queue.most_in_flight == ENQUEUE_CONCURRENCY


class ListingThatFails(InMemoryConnectionRepository):
    """The world's connections, whose listing sees what was sent while it was still going and
    fails after `fail_after` tenants when that is set."""

    def __init__(self, world: SyncWorld, queue: FlakyQueue, fail_after: int | None = None) -> None:
        super().__init__()
        self.world, self.queue, self.fail_after = world, queue, fail_after
        self.sent_while_listing = 0

    async def with_status(self, status: ConnectionStatus) -> AsyncIterator[Connection]:
        for n, connection in enumerate([c async for c in self.world.connections.with_status(status)]):
            if n == self.fail_after:
                raise UpstreamUnavailable("Table Storage is unavailable (list connections).")
            yield connection
        self.sent_while_listing = len(self.queue.attempts)


async def test_listing_and_sending_overlap(world: SyncWorld) -> None:
    queue = FlakyQueue(world.queue)
    listing = ListingThatFails(world, queue)
    service = fanout(world, queue, listing)

    await service.enqueue_connected()

    # The listing waits for senders only when 2 x ENQUEUE_CONCURRENCY requests are waiting.
    assert listing.sent_while_listing >= len(TENANTS) - 2 * ENQUEUE_CONCURRENCY


async def test_a_listing_failure_still_sends_the_tenants_listed_before_it(world: SyncWorld) -> None:
    queue = FlakyQueue(world.queue)
    service = fanout(world, queue, ListingThatFails(world, queue, fail_after=50))

    with pytest.raises(UpstreamUnavailable, match="list connections"):
        await service.enqueue_connected()

    assert sent(world) == Counter(TENANTS[:50])


class OutageQueue:
    """A queue in an outage: each send takes `takes` of the clock (the SDK's own retries), then
    hangs (`hang`) or fails."""

    name = "sync-requests"

    def __init__(self, world: SyncWorld, takes: timedelta, *, hang: bool) -> None:
        self.world, self.takes, self.hang = world, takes, hang
        self.attempts = 0

    async def send(self, body: str, *, delay_s: int = 0) -> None:
        self.attempts += 1
        self.world.clock.current += self.takes
        if self.hang:
            await asyncio.Event().wait()
        raise UpstreamUnavailable("Queue Storage is unavailable (send to sync-requests).")


@pytest.mark.parametrize("hang", [True, False])
async def test_a_queue_outage_ends_the_run_at_its_deadline_and_leaves_the_rest_to_the_next(
    world: SyncWorld, hang: bool, caplog: pytest.LogCaptureFixture
) -> None:
    world.config = replace(world.config, fanout_deadline=timedelta(seconds=0.2))
    queue = OutageQueue(world, timedelta(seconds=0.1), hang=hang)
    caplog.set_level(logging.INFO)
    with pytest.raises(SyncEnqueueFailed, match="not tried before the run deadline") as failed:
        await asyncio.wait_for(fanout(world, queue).enqueue_connected(), 5)  # ends: it does not hang
    # Only sends already out when the deadline passed were tried; every other tenant is counted.
    assert queue.attempts <= ENQUEUE_CONCURRENCY * SEND_ATTEMPTS
    assert f"of {len(TENANTS)} sync messages could not be queued" in failed.value.message
    assert "left for the next run (the deadline passed)" in caplog.text
    assert world.queue.bodies == []
