"""What a create writes: a warm create claims its key and stores its row, nothing else; the claim
alone is renewed before a POST that leaves late; claims of creates that ended in their request
are left out of the sweep; a failure after the claim frees the key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.errors import BadRequest, IdempotencyKeyReused, UpstreamUnavailable
from shared.records import IdempotencyRecord, Ticket
from shared.services.idempotency_claims import idempotency_key_hash
from shared.services.ticket_policy import TicketingPolicy
from shared.services.ticketing import TicketingService
from tests.fakes.tickets import InMemoryClaims, InMemoryTickets
from tests.unit.test_ticketing_service import CALLER, NOW, TENANT, World, request


class CountedTickets(InMemoryTickets):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def add(self, ticket: Ticket) -> Ticket:
        self.calls.append("add")
        return await super().add(ticket)

    async def replace(self, ticket: Ticket) -> Ticket:
        self.calls.append("replace")
        return await super().replace(ticket)

    async def get(self, tenant_id: str, ticket_id: str) -> Ticket | None:
        self.calls.append("get")
        return await super().get(tenant_id, ticket_id)


def counted_world(**kwargs: Any) -> tuple[World, CountedTickets]:
    tickets = CountedTickets()
    return World(tickets=tickets, **kwargs), tickets


def claim_of(world: World, key: str = "key-1") -> Any:
    return world.claims.rows[(TENANT, idempotency_key_hash(key))]


async def test_a_create_writes_its_claim_once_and_its_row_once() -> None:
    world, tickets = counted_world()
    result = await world.create()
    assert (result.created, result.ticket.status) == (True, "created")
    assert world.claims.calls == ["claim"]  # not read first, not renewed, not marked completed
    assert tickets.calls == ["add"]
    claim = claim_of(world)
    # The claim reserved the POST it covered, with the whole lease, and is not watched by the sweep.
    assert (claim.posted_at, claim.lease_until, claim.deferred) == (NOW, NOW + world.policy.lease, False)


async def test_a_repeat_finds_the_claim_after_its_insert_fails_and_writes_nothing() -> None:
    world, tickets = counted_world()
    first = await world.create()
    world.claims.calls.clear()
    tickets.calls.clear()
    again = await world.create()
    assert (again.created, again.ticket.id) == (False, first.ticket.id)
    assert world.claims.calls == ["claim", "get"]
    assert tickets.calls == ["get"]
    with pytest.raises(IdempotencyKeyReused):
        await world.create(name="Another body")
    assert world.servicenow.creates == 1


async def test_a_post_that_leaves_after_the_grace_renews_the_lease_first() -> None:
    world = World()
    late = world.policy.post_grace + timedelta(seconds=1)

    async def slow_token() -> None:
        world.clock.current += late

    world.servicenow.token_hook = slow_token
    assert (await world.create()).created
    assert world.claims.calls == ["claim", "replace"]
    claim = claim_of(world)
    assert (claim.posted_at, claim.lease_until) == (NOW + late, NOW + late + world.policy.lease)


async def test_a_post_within_the_grace_is_covered_by_the_claim() -> None:
    world = World()

    async def quick_token() -> None:
        world.clock.current += world.policy.post_grace

    world.servicenow.token_hook = quick_token
    assert (await world.create()).created
    assert world.claims.calls == ["claim"]


async def test_the_sweep_never_lists_a_claim_whose_create_ended_in_its_request() -> None:
    world = World()
    await world.create()
    world.clock.current += timedelta(days=1)
    assert (
        await world.claims.stale_in_progress(
            written_before=world.clock.now(), created_after=NOW - timedelta(days=1), limit=10
        )
        == []
    )
    assert await world.service.sweep_pending_creates() == 0
    assert claim_of(world).status == "in_progress"  # the row says it is done; no write needed


async def test_an_unknown_improvement_action_after_the_claim_frees_the_key() -> None:
    world = World()
    with pytest.raises(BadRequest):
        await world.create(improvementActionId="NoSuchAction")
    assert world.claims.calls == ["claim", "release"]
    assert (world.claims.rows, world.servicenow.creates) == ({}, 0)
    assert (await world.create()).created  # the key is free for a corrected body


def test_the_grace_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValueError, match="post_grace"):
        TicketingPolicy(post_grace=timedelta(seconds=90))
    with pytest.raises(ValueError, match="claim_retention"):
        TicketingPolicy(claim_retention=timedelta(days=1))


class RecordingHook:
    def __init__(self) -> None:
        self.created: list[tuple[str, str]] = []

    async def ticket_created(self, connection: Any, ticket: Ticket) -> None:
        self.created.append((connection.tenant_id, ticket.ticket_id))


async def test_the_created_hook_hears_of_each_ticket_a_request_made_once() -> None:
    world = World()
    hook = RecordingHook()
    service = TicketingService(
        connections=world.connections, tickets=world.tickets, idempotency=world.claims,
        servicenow=world.servicenow, actions=world.actions, queue=world.queue, policy=world.policy,
        clock=world.clock, created_hook=hook,
    )  # fmt: skip
    first = await service.create(CALLER, request(), "key-1")
    await service.create(CALLER, request(), "key-1")  # a repeat: nothing new
    assert hook.created == [(TENANT, first.ticket.id)]


class ClaimsThatCannotBeKept(InMemoryClaims):
    """Storage refuses the write that keeps a claim after a failed create (and marks it deferred)."""

    async def replace(self, record: IdempotencyRecord) -> IdempotencyRecord:
        if record.deferred:
            self.calls.append("replace")
            raise UpstreamUnavailable("Table Storage is unavailable (replace in idempotency).")
        return await super().replace(record)


async def test_a_create_whose_claim_cannot_be_marked_deferred_is_503_not_202() -> None:
    world = World(claims=ClaimsThatCannotBeKept())
    world.servicenow.outcomes = ["timeout"]  # ambiguous: normally 202 and a `creating` row
    with pytest.raises(UpstreamUnavailable) as failed:
        await world.create()
    # No `creating` row the sweep could not see, and no message: a retry with the key goes on.
    assert (world.tickets.rows, world.queue.sent) == ({}, [])
    assert failed.value.retry_after > 0
