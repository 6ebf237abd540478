"""Creates ServiceNow did not confirm: 202 `creating`, the `ticket-creates` worker's rounds, and
the expiry of completed idempotency claims. In-memory ports and a fake clock, as in
`test_ticketing_service.py` (whose `World` this reuses)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from shared.errors import ReauthorizationRequired, UpstreamRejected, UpstreamUnavailable
from shared.models import ConnectionStatus, TicketListQuery
from shared.records import IdempotencyRecord, Ticket
from shared.services.idempotency_claims import idempotency_key_hash, request_fingerprint
from shared.services.ticket_content import Requester, ticket_content
from shared.services.ticket_policy import TicketingPolicy
from shared.stores.tables import from_entity, to_entity
from tests.unit.test_ticketing_service import CALLER, NOW, TENANT, World, claim_of, request

WINDOW = timedelta(seconds=75)


async def creating(world: World, *outcomes: str) -> str:
    """A create answered 202 `creating` after the scripted outcomes; its ticket id."""
    world.servicenow.outcomes = list(outcomes)  # type: ignore[arg-type]
    result = await world.create()
    assert result.ticket.status == "creating"
    return result.ticket.id


def row(world: World, ticket_id: str) -> Ticket:
    return world.tickets.rows[(TENANT, ticket_id)]


async def test_an_ambiguous_round_sends_the_message_again_after_another_window() -> None:
    world = World()
    ticket_id = await creating(world, "timeout", "timeout")
    assert await world.work() == "again"
    assert (world.servicenow.creates, world.all_records()) == (2, [])
    [message] = world.queue.messages
    assert (message.ticket_id, message.round) == (ticket_id, 1)
    assert world.queue.delays == [76]  # the window from this failure, and a second's margin
    claim = claim_of(world)
    assert (claim.status, claim.posted_at, claim.lease_until) == (
        "in_progress",
        NOW + WINDOW,
        NOW + 2 * WINDOW,
    )
    assert row(world, ticket_id).status == "creating"
    assert await world.work() == "created"  # the third create goes through
    assert (world.servicenow.creates, len(world.all_records())) == (3, 1)


async def test_a_create_servicenow_turns_away_comes_back_after_its_retry_after() -> None:
    world = World(policy=TicketingPolicy(create_attempts=1))
    world.servicenow.rate_limit_retry_after = 300
    await creating(world, "timeout", "rate_limited")
    assert await world.work() == "again"
    assert world.queue.delays == [301]
    assert claim_of(world).lease_until is None  # nothing on the wire: the lease is free
    assert await world.work() == "created"
    assert len(world.all_records()) == 1


async def test_the_last_round_only_looks_and_a_record_still_missing_fails_the_ticket() -> None:
    world = World(policy=TicketingPolicy(completion_rounds=2))
    ticket_id = await creating(world, "timeout", "timeout")
    assert await world.work() == "again"
    assert await world.work() == "failed"  # looked once more, after the window: nothing
    assert world.servicenow.creates == 2
    assert len(world.servicenow.lookups) == 4
    failed = await world.service.ticket(TENANT, ticket_id)
    assert (failed.status, failed.number, failed.url) == ("failed", "", "")
    assert failed.failure_reason is not None
    assert "did not confirm" in failed.failure_reason
    assert "may exist" not in failed.failure_reason  # the last lookup came after every window
    assert claim_of(world).status == "completed"
    repeat = await world.create()  # the key answers with the failed ticket and never creates
    assert (repeat.created, repeat.ticket) == (False, failed)
    assert world.servicenow.creates == 2


async def test_the_last_round_takes_a_record_that_committed_late() -> None:
    world = World(policy=TicketingPolicy(completion_rounds=2))
    ticket_id = await creating(world, "timeout", "late")
    assert await world.work() == "again"
    assert await world.work() == "created"
    [record] = world.all_records()
    assert (row(world, ticket_id).sys_id, world.servicenow.creates) == (record["sys_id"], 2)


async def test_a_refused_create_fails_the_ticket_and_the_key_keeps_answering_with_it() -> None:
    world = World()
    ticket_id = await creating(world, "timeout", "rejected")
    assert await world.work() == "failed"
    failed = row(world, ticket_id)
    assert failed.status == "failed"
    assert failed.failure_reason == (
        "ServiceNow refused to create a incident record (HTTP 403): Operation Failed."
    )
    assert claim_of(world).status == "completed"
    repeat = await world.create()
    assert (repeat.created, repeat.ticket.status, repeat.ticket.failure_reason) == (
        False,
        "failed",
        failed.failure_reason,
    )
    assert (world.servicenow.creates, world.all_records()) == (2, [])


async def test_a_repeat_refused_after_the_202_fails_the_ticket_too() -> None:
    world = World()
    ticket_id = await creating(world, "timeout", "rejected")
    world.clock.current += WINDOW
    repeat = await world.create()  # takes the claim over before the worker does
    assert (repeat.created, repeat.ticket.id, repeat.ticket.status) == (False, ticket_id, "failed")
    assert claim_of(world).status == "completed"
    assert await world.work() == "skipped"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("removed", "disconnected"),
        (ConnectionStatus.REAUTHORIZATION_REQUIRED, "re-authorize"),
        ("pending with another client", "authorize"),
        ("other instance", "another ServiceNow instance"),
    ],
)
async def test_a_connection_that_cannot_make_the_record_any_more_fails_the_ticket(
    change: object, words: str
) -> None:
    world = World()
    ticket_id = await creating(world, "timeout")
    if change == "removed":
        world.connections.rows.clear()
    elif change == "other instance":
        world.connections.rows[TENANT] = world.connections.rows[TENANT].model_copy(
            update={"instance_url": "https://fabrikam.service-now.com"}
        )
    elif change == "pending with another client":
        update = {"status": ConnectionStatus.PENDING_AUTHORIZATION, "client_id": "another"}
        world.connections.rows[TENANT] = world.connections.rows[TENANT].model_copy(update=update)
    else:
        world.connections.rows[TENANT] = world.connections.rows[TENANT].model_copy(update={"status": change})
    assert await world.work() == "failed"
    failed = row(world, ticket_id)
    assert failed.status == "failed"
    assert failed.failure_reason is not None
    assert words in failed.failure_reason
    assert f"correlation id {ticket_id} may exist" in failed.failure_reason  # never looked after it
    assert (world.servicenow.creates, claim_of(world).status) == (1, "completed")


async def test_a_grant_that_dies_during_the_round_fails_the_ticket() -> None:
    world = World()
    ticket_id = await creating(world, "timeout")

    async def dead_grant() -> None:  # as AccessTokens does: record it, then refuse
        connection = world.connections.rows[TENANT]
        update = {"status": ConnectionStatus.REAUTHORIZATION_REQUIRED}
        world.connections.rows[TENANT] = connection.model_copy(update=update)
        raise ReauthorizationRequired()

    world.servicenow.token_hook = dead_grant
    assert await world.work() == "failed"
    assert "re-authorize" in (row(world, ticket_id).failure_reason or "")
    assert world.servicenow.creates == 1


async def test_a_held_lease_sends_the_message_again_for_when_it_ends() -> None:
    world = World()
    await creating(world, "timeout")
    claim = claim_of(world)
    await world.claims.replace(claim.model_copy(update={"lease_until": NOW + 2 * WINDOW}))
    assert await world.work() == "again"  # at NOW + 75 s: the lease runs 75 s more
    [message] = world.queue.messages
    assert (message.round, world.queue.delays) == (0, [76])  # not a round: nothing was tried
    assert (world.servicenow.creates, len(world.servicenow.lookups)) == (1, 1)
    assert await world.work() == "created"


async def test_a_round_past_its_deadline_comes_back_after_the_window_of_its_cut_post() -> None:
    world = World(policy=TicketingPolicy(create_deadline_s=0.05))
    ticket_id = await creating(world, "timeout", "hang")
    assert await asyncio.wait_for(world.work(), 2) == "again"
    [message] = world.queue.messages
    assert (message.round, world.queue.delays) == (1, [76])  # the window from the cut, a second more
    claim = claim_of(world)
    assert (claim.posted_at, claim.lease_until) == (world.clock.now(), world.clock.now() + WINDOW)
    assert row(world, ticket_id).status == "creating"


async def test_a_message_whose_claim_is_gone_or_that_carries_no_row_is_skipped() -> None:
    world = World()
    ticket_id = await creating(world, "timeout")
    message, _ = world.queue.take()
    del world.tickets.rows[(TENANT, ticket_id)]
    older = message.model_copy(update={"ticket": None})  # queued before messages carried the row
    assert await world.service.complete(older) == "skipped"
    assert world.tickets.rows == {}
    del world.claims.rows[(TENANT, message.key_hash)]
    assert await world.service.complete(message) == "skipped"
    assert world.tickets.rows == {}
    assert world.servicenow.creates == 1


async def test_a_queue_that_takes_no_message_is_503_until_the_window_ends_and_writes_no_row() -> None:
    world = World()
    world.queue.fail_sends = True
    world.servicenow.outcomes = ["timeout"]
    with pytest.raises(UpstreamUnavailable) as failed:
        await world.create()
    assert failed.value.retry_after == 75
    assert world.tickets.rows == {}
    assert claim_of(world).lease_until == NOW + WINDOW
    world.clock.current += WINDOW
    retried = await world.create()  # the key again after Retry-After finishes it
    assert (retried.created, retried.ticket.status) == (True, "created")
    assert len(world.all_records()) == 1


async def test_a_repeat_past_its_deadline_on_a_creating_ticket_is_still_202() -> None:
    world = World(policy=TicketingPolicy(create_deadline_s=0.05))
    ticket_id = await creating(world, "timeout", "hang")
    world.queue.take()
    world.clock.current += WINDOW
    repeat = await asyncio.wait_for(world.create(), 2)
    assert (repeat.created, repeat.ticket.id, repeat.ticket.status) == (False, ticket_id, "creating")
    assert world.queue.delays == [75]  # the worker goes on once the cut POST's window has ended
    assert claim_of(world).lease_until == world.clock.now() + WINDOW


async def test_tickets_without_a_record_are_listed_but_on_no_summary_card() -> None:
    world = World()
    made = (await world.create(key="made")).ticket
    pending = await creating(world, "timeout")
    page = await world.service.page(TENANT, TicketListQuery())
    assert {(t.id, t.status) for t in page.items} == {(made.id, "created"), (pending, "creating")}
    summary = await world.service.summary(TENANT)
    assert summary.incident.total == 1
    assert "" not in {s.state for s in summary.incident.states}


def test_a_row_stored_before_the_status_column_reads_as_created() -> None:
    ticket = Ticket(
        tenant_id=TENANT, ticket_id="8" * 13 + "a" * 8, type="incident", sys_id="s", number="INC1",
        instance_url="https://contoso.service-now.com", name="n", description="d", priority=3,
        due_date=NOW.date(), recommendation_source="user", recommendation_category="Data",
        created_by="u", created_by_name="U", created_at=NOW, state="1", state_updated_at=NOW,
    )  # fmt: skip
    entity = to_entity(ticket, TENANT, ticket.ticket_id)
    del entity["Status"]
    assert (from_entity(Ticket, entity, frozenset()).status, entity.get("FailureReason")) == ("created", None)


# --- completed claims expire -------------------------------------------------------------------------


def claim(key: str, *, completed_days_ago: float | None, created_days_ago: float = 30) -> IdempotencyRecord:
    created = NOW - timedelta(days=created_days_ago)
    return IdempotencyRecord(
        tenant_id=TENANT, key_hash=idempotency_key_hash(key), fingerprint="f", ticket_id="8" * 13 + "b" * 8,
        status="in_progress" if completed_days_ago is None else "completed", created_by=CALLER.user_id,
        created_by_name=CALLER.name, created_at=created,
        completed_at=None if completed_days_ago is None else NOW - timedelta(days=completed_days_ago),
    )  # fmt: skip


async def test_claims_expire_a_week_after_they_were_made_in_bounded_runs_completed_or_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World(policy=TicketingPolicy(claim_purge_limit=2))
    for key, made, completed in [
        ("old-1", 8.0, 1.0), ("old-2", 9.0, None), ("old-3", 30.0, 29.0), ("recent", 6.9, 6.9), ("open", 6.9, None),
    ]:  # fmt: skip
        await world.claims.claim(claim(key, completed_days_ago=completed, created_days_ago=made))
    caplog.set_level(logging.INFO)
    assert await world.service.purge_expired_claims() == 2
    assert "the limit of one run" in caplog.text
    assert await world.service.purge_expired_claims() == 1
    assert await world.service.purge_expired_claims() == 0
    left = {key for key in ("old-1", "old-2", "old-3", "recent", "open") if world.claims.rows.get(
        (TENANT, idempotency_key_hash(key)))}  # fmt: skip
    assert left == {"recent", "open"}


async def test_a_key_reused_after_its_claim_expired_is_a_new_request() -> None:
    world = World()
    first = await world.create()
    world.clock.current += timedelta(days=7, seconds=1)
    assert await world.service.purge_expired_claims() == 1
    again = await world.create()
    assert again.created
    assert again.ticket.id != first.ticket.id
    assert len(world.all_records()) == 2


async def test_a_failing_purge_is_logged_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    world = World()

    async def unavailable(before: object, *, limit: int = 1000) -> int:
        raise UpstreamUnavailable("Table Storage is unavailable (list idempotency).")

    world.claims.delete_expired = unavailable  # type: ignore[method-assign]
    assert await world.service.purge_expired_claims() == 0
    assert "Could not delete expired idempotency claims" in caplog.text


async def test_a_refusal_before_any_202_still_frees_the_key() -> None:
    """Unchanged: ServiceNow refusing a create that nothing ambiguous preceded is 502, no ticket."""
    world = World()
    world.servicenow.outcomes = ["rejected"]
    with pytest.raises(UpstreamRejected):
        await world.create()
    assert (world.tickets.rows, world.claims.rows, world.queue.sent) == ({}, {}, [])


async def test_a_creating_row_stored_late_is_completed_by_whoever_made_the_record() -> None:
    """A 202 whose row write landed after another request took the claim over and made the record."""
    world = World()
    long_ago = NOW - timedelta(minutes=5)
    ticket_id = "8" * 13 + "c" * 8
    await world.claims.claim(
        IdempotencyRecord(
            tenant_id=TENANT, key_hash=idempotency_key_hash("key-1"), fingerprint=request_fingerprint(request()),
            ticket_id=ticket_id, status="in_progress", created_by=CALLER.user_id, created_by_name=CALLER.name,
            created_at=long_ago, lease_until=None, posted_at=long_ago,
        )
    )  # fmt: skip
    content = ticket_content(request(), Requester(TENANT, CALLER.user_id, CALLER.name), ticket_id, None)

    async def late_row() -> None:
        await world.tickets.add(content.row(instance_url="https://contoso.service-now.com", at=long_ago))

    world.servicenow.token_hook = late_row
    result = await world.create()
    assert (result.ticket.id, result.ticket.status) == (ticket_id, "created")
    assert row(world, ticket_id).status == "created"
    assert claim_of(world).status == "completed"
