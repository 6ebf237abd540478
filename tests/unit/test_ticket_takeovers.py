"""Takeovers and faults around a create ServiceNow did not confirm: a deadline that cuts a POST
on the wire, a repeat of the key that takes a `creating` ticket over, a connection waiting for
consent, and messages lost to storage faults or failed rounds (the timer's sweep). In-memory
ports and a fake clock, as in `test_ticketing_service.py` (whose `World` this reuses)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from shared.errors import BadRequest, IdempotencyKeyInProgress, PreconditionFailed, UpstreamUnavailable
from shared.models import ConnectionStatus
from shared.records import IdempotencyRecord, Ticket, new_ticket_id
from shared.services.idempotency_claims import idempotency_key_hash, request_fingerprint
from shared.services.ticket_policy import TicketingPolicy
from tests.unit.test_ticketing_service import ACTION, CALLER, NOW, TENANT, World, claim_of, request

WINDOW = timedelta(seconds=75)
FROM_GRAPH: dict[str, Any] = {
    "name": None,
    "description": None,
    "recommendationCategory": None,
    "improvementActionId": "AdminMFAV2",
}


async def creating(world: World, *outcomes: str, **changes: Any) -> str:
    """A create answered 202 `creating` after the scripted outcomes; its ticket id."""
    world.servicenow.outcomes = list(outcomes)  # type: ignore[arg-type]
    result = await world.create(**changes)
    assert result.ticket.status == "creating"
    return result.ticket.id


def row(world: World, ticket_id: str) -> Ticket:
    return world.tickets.rows[(TENANT, ticket_id)]


def later(world: World) -> None:
    """Past the time after which the sweep takes a claim nobody wrote for a message lost."""
    world.clock.current += world.policy.sweep_after + timedelta(seconds=1)


def set_connection(world: World, **update: Any) -> None:
    world.connections.rows[TENANT] = world.connections.rows[TENANT].model_copy(update=update)


# --- the deadline cuts a POST on the wire --------------------------------------------------------


async def test_a_post_cut_by_the_deadline_settles_from_the_cut_so_a_retry_sends_no_second_create() -> None:
    world = World(policy=TicketingPolicy(create_deadline_s=0.05))
    world.servicenow.outcomes = ["hang"]
    # The lease was renewed at NOW; the POST then waited 50 s for a connection and is still out
    # when the deadline cuts it: ServiceNow may commit it until NOW + 50 + 60.
    world.servicenow.on_the_wire = lambda: world.clock.advance(seconds=50)
    with pytest.raises(UpstreamUnavailable) as overdue:
        await asyncio.wait_for(world.create(), 2)
    world.servicenow.on_the_wire = None
    cut = NOW + timedelta(seconds=50)
    claim = claim_of(world)
    assert (claim.posted_at, claim.lease_until) == (cut, cut + WINDOW)
    assert overdue.value.retry_after == 75

    world.clock.current = NOW + timedelta(seconds=91)  # the lease renewed before the POST is over
    with pytest.raises(IdempotencyKeyInProgress):
        await world.create()
    assert world.servicenow.creates == 1  # no second create while the cut one may commit

    world.clock.current = cut + WINDOW
    assert (await world.create()).ticket.id == claim.ticket_id
    assert (world.servicenow.creates, len(world.all_records())) == (2, 1)


async def test_a_worker_post_cut_by_the_deadline_comes_back_after_the_window_from_the_cut() -> None:
    world = World(policy=TicketingPolicy(create_deadline_s=0.05))
    await creating(world, "timeout", "hang")
    world.servicenow.on_the_wire = lambda: world.clock.advance(seconds=50)
    assert await asyncio.wait_for(world.work(), 2) == "again"
    cut = NOW + WINDOW + timedelta(seconds=50)
    claim = claim_of(world)
    assert (claim.posted_at, claim.lease_until) == (cut, cut + WINDOW)
    assert world.queue.sent[0].visible_at == cut + WINDOW + timedelta(seconds=1)


# --- a repeat that takes a `creating` ticket over ------------------------------------------------


async def test_a_takeover_of_a_creating_ticket_sends_what_the_first_create_sent() -> None:
    world = World()
    ticket_id = await creating(world, "timeout", **FROM_GRAPH)
    [message] = world.queue.messages
    renamed = ACTION.model_copy(update={"title": "Renamed", "action_url": "https://elsewhere.example"})
    world.actions.actions[ACTION.id] = renamed  # type: ignore[attr-defined]
    world.clock.current += WINDOW
    again = await world.create(**FROM_GRAPH)
    assert (again.ticket.id, again.ticket.status, again.ticket.name) == (ticket_id, "created", ACTION.title)
    [record] = world.all_records()
    assert {name: record[name] for name in message.fields} == message.fields
    assert world.actions.calls == 1  # type: ignore[attr-defined]


async def test_a_repeat_of_a_creating_ticket_whose_action_is_gone_still_finishes_it() -> None:
    world = World()
    ticket_id = await creating(world, "timeout", improvementActionId="AdminMFAV2")
    world.actions.actions.clear()  # type: ignore[attr-defined]
    world.clock.current += WINDOW
    again = await world.create(improvementActionId="AdminMFAV2")
    assert (again.created, again.ticket.id, again.ticket.status) == (False, ticket_id, "created")
    assert len(world.all_records()) == 1


async def test_an_action_gone_before_a_takeover_without_a_row_leaves_the_lease_free() -> None:
    world = World()
    world.servicenow.outcomes = ["unavailable"] * 3
    with pytest.raises(UpstreamUnavailable):
        await world.create(improvementActionId="AdminMFAV2")
    assert claim_of(world).lease_until is None
    world.actions.actions.clear()  # type: ignore[attr-defined]
    with pytest.raises(BadRequest):
        await world.create(improvementActionId="AdminMFAV2")
    assert claim_of(world).lease_until is None  # not taken: the next retry need not wait


@pytest.mark.parametrize("lookup", ["rejected", "unavailable"])
async def test_a_repeat_whose_lookup_fails_after_a_takeover_of_a_creating_ticket_is_202(lookup: str) -> None:
    world = World()
    ticket_id = await creating(world, "timeout")
    world.queue.take()
    world.clock.current += WINDOW + timedelta(seconds=5)
    world.servicenow.lookup_outcomes = [lookup]  # type: ignore[list-item]
    again = await world.create()
    assert (again.created, again.ticket.id, again.ticket.status) == (False, ticket_id, "creating")
    [message] = world.queue.messages  # the worker goes on with it
    assert message.ticket_id == ticket_id
    assert world.servicenow.creates == 1
    assert await world.work() == "created"


async def test_a_repeat_that_cannot_queue_its_message_is_still_202_and_the_sweep_queues_it() -> None:
    world = World()
    ticket_id = await creating(world, "timeout")
    world.queue.take()  # the first message was lost
    world.clock.current += WINDOW
    world.servicenow.lookup_outcomes = ["unavailable"]
    world.queue.fail_sends = True
    again = await world.create()
    assert (again.ticket.id, again.ticket.status) == (ticket_id, "creating")
    world.queue.fail_sends = False
    later(world)
    assert await world.service.sweep_pending_creates() == 1
    assert await world.work() == "created"


async def test_a_takeover_of_a_creating_ticket_of_the_instance_the_tenant_left_makes_nothing() -> None:
    world = World()
    ticket_id = await creating(world, "timeout")
    world.queue.take()
    set_connection(world, instance_url="https://fabrikam.service-now.com")
    world.clock.current += WINDOW
    again = await world.create()
    assert (again.ticket.id, again.ticket.status) == (ticket_id, "creating")
    assert (world.servicenow.creates, len(world.servicenow.lookups)) == (1, 1)
    assert await world.work() == "failed"
    assert "another ServiceNow instance" in (row(world, ticket_id).failure_reason or "")


# --- a rotated client secret: the connection waits for consent -------------------------------------


async def test_a_ticket_waits_while_the_connection_waits_for_consent_on_the_same_client() -> None:
    world = World()
    ticket_id = await creating(world, "timeout")
    set_connection(world, status=ConnectionStatus.PENDING_AUTHORIZATION)
    assert await world.work() == "again"
    [message] = world.queue.messages
    assert (message.round, world.queue.delays) == (0, [301])
    assert (row(world, ticket_id).status, claim_of(world).status) == ("creating", "in_progress")
    assert world.servicenow.creates == 1
    set_connection(world, status=ConnectionStatus.CONNECTED)
    assert await world.work() == "created"
    assert len(world.all_records()) == 1


async def test_a_ticket_waits_for_consent_only_so_long() -> None:
    world = World(policy=TicketingPolicy(consent_wait=timedelta(minutes=8)))
    ticket_id = await creating(world, "timeout")
    set_connection(world, status=ConnectionStatus.PENDING_AUTHORIZATION)
    assert await world.work() == "again"  # at NOW + 75 s
    assert await world.work() == "again"  # at NOW + 6 min 16 s
    assert await world.work() == "failed"  # at NOW + 11 min 17 s
    failed = row(world, ticket_id)
    assert "authorize" in (failed.failure_reason or "")
    assert claim_of(world).status == "completed"


# --- lost messages, rows and failed rounds ----------------------------------------------------------


async def test_a_row_the_request_never_wrote_is_written_from_its_message() -> None:
    world = World()
    world.servicenow.outcomes = ["timeout"]

    async def crash(ticket: Any) -> Any:  # the process died after the message went out
        raise RuntimeError("process killed")

    add = world.tickets.add
    world.tickets.add = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await world.create()
    world.tickets.add = add  # type: ignore[method-assign]
    assert world.tickets.rows == {}
    ticket_id = claim_of(world).ticket_id
    assert await world.work() == "created"
    made = row(world, ticket_id)
    assert (made.status, made.name, made.created_by_name) == ("created", "Turn on MFA", CALLER.name)
    assert claim_of(world).status == "completed"
    again = await world.create()
    assert (again.created, again.ticket.id) == (False, ticket_id)
    assert len(world.all_records()) == 1


async def test_a_message_the_queue_would_not_take_is_queued_again_by_the_sweep() -> None:
    world = World()
    ticket_id = await creating(world, "timeout", "timeout")
    message, visible_at = world.queue.take()
    assert visible_at is not None
    world.clock.current = visible_at
    world.queue.fail_sends = True
    for _ in range(5):  # the round, then the host's retries of its message, until the poison queue
        with pytest.raises(UpstreamUnavailable):
            await world.service.complete(message)
    world.queue.fail_sends = False
    assert await world.service.sweep_pending_creates() == 0  # not yet: the claim was just written
    later(world)
    assert await world.service.sweep_pending_creates() == 1
    assert await world.service.sweep_pending_creates() == 0  # queued once
    assert await world.work() == "created"
    assert (row(world, ticket_id).status, len(world.all_records())) == ("created", 1)
    later(world)
    assert await world.service.sweep_pending_creates() == 0


async def test_the_sweep_leaves_held_claims_and_claims_without_a_ticket_and_tidies_finished_ones() -> None:
    world = World()
    world.servicenow.outcomes = ["unavailable"] * 3
    with pytest.raises(UpstreamUnavailable):
        await world.create(key="no-row")  # 503: the key's next request finishes it
    await creating(world, "timeout", key="held")
    await world.create(key="made")
    claim = claim_of(world, "made")
    # Deferred, then finished by a request that stopped before marking the claim.
    await world.claims.replace(claim.model_copy(update={"status": "in_progress", "deferred": True}))
    world.queue.sent.clear()
    later(world)
    held = claim_of(world, "held")
    await world.claims.replace(held.model_copy(update={"lease_until": world.clock.now() + WINDOW}))
    world.claims.written[(TENANT, held.key_hash)] = NOW  # held, though not written for long
    assert await world.service.sweep_pending_creates() == 0
    assert claim_of(world, "made").status == "completed"
    assert world.queue.sent == []
    # Written now, a claim without a ticket leaves the sweep's query: the next runs see others.
    assert world.claims.written[(TENANT, idempotency_key_hash("no-row"))] == world.clock.now()


async def test_a_round_that_fails_unexpectedly_frees_the_lease_for_the_hosts_retry() -> None:
    world = World()
    await creating(world, "timeout")
    message, visible_at = world.queue.take()
    assert visible_at is not None
    world.clock.current = visible_at
    find_one = world.servicenow.find_one

    async def broken(*args: Any) -> Any:
        world.servicenow.find_one = find_one  # type: ignore[method-assign]
        raise RuntimeError("a bug")

    world.servicenow.find_one = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError):
        await world.service.complete(message)
    assert claim_of(world).lease_until is None
    assert await world.service.complete(message) == "created"  # the host's retry
    assert len(world.all_records()) == 1


async def test_a_takeover_lost_to_another_comes_back_after_their_lease() -> None:
    world = World()
    await creating(world, "timeout")
    replace = world.claims.replace

    async def beaten(record: IdempotencyRecord) -> IdempotencyRecord:
        world.claims.replace = replace  # type: ignore[method-assign]
        current = claim_of(world)  # a repeat of the key took the claim over a moment earlier
        await replace(current.model_copy(update={"lease_until": world.clock.now() + timedelta(seconds=90)}))
        raise PreconditionFailed()

    world.claims.replace = beaten  # type: ignore[method-assign]
    assert await world.work() == "again"
    assert world.queue.delays == [91]


async def test_the_last_round_does_not_look_before_the_window_has_passed() -> None:
    world = World(policy=TicketingPolicy(completion_rounds=1))
    posted = NOW - timedelta(seconds=20)
    ticket_id = new_ticket_id(posted)
    await world.claims.claim(
        IdempotencyRecord(
            tenant_id=TENANT, key_hash=idempotency_key_hash("key-1"), fingerprint=request_fingerprint(request()),
            ticket_id=ticket_id, status="in_progress", created_by=CALLER.user_id,
            created_by_name=CALLER.name, created_at=posted, lease_until=None, posted_at=posted,
        )
    )  # fmt: skip
    result = await world.create()  # a takeover: the window is not over, so it is answered 202
    assert (result.ticket.id, result.ticket.status) == (ticket_id, "creating")
    message, _ = world.queue.take()
    await world.claims.replace(claim_of(world).model_copy(update={"lease_until": None}))
    world.clock.advance(seconds=10)
    lookups = len(world.servicenow.lookups)
    assert await world.service.complete(message) == "again"  # the lease is free, the window not over
    assert len(world.servicenow.lookups) == lookups
    assert world.queue.sent[0].visible_at == posted + WINDOW + timedelta(seconds=1)
