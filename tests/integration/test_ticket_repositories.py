"""The ticket and idempotency repositories against Azurite, through the real azure-data-tables client."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from shared.errors import BadRequest, PreconditionFailed
from shared.models import TicketType
from shared.records import IdempotencyRecord, Ticket, TicketStateChange, new_ticket_id
from shared.stores.idempotency import IdempotencyRepository
from shared.stores.tables import TableStore
from shared.stores.tickets import TicketRepository

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ticket(tenant: str, ticket_id: str, type: TicketType = "incident", state: str = "1") -> Ticket:
    return Ticket(
        tenant_id=tenant, ticket_id=ticket_id, type=type, sys_id="a" * 32, number="INC0010001",
        instance_url="https://contoso.service-now.com", name="n", description="d", priority=3,
        due_date=date(2026, 6, 30), recommendation_source="user", recommendation_category="Data",
        created_by="u", created_by_name="U", created_at=NOW, state=state, state_updated_at=NOW,
    )  # fmt: skip


def test_ticket_ids_sort_newest_first() -> None:
    older, newer = new_ticket_id(NOW), new_ticket_id(NOW + timedelta(milliseconds=1))
    assert newer < older
    assert len(older) == 21


async def test_round_trip_and_duplicate_ids_are_refused(store: TableStore) -> None:
    repo = TicketRepository(store)
    saved = await repo.add(ticket("t1", new_ticket_id(NOW)))
    loaded = await repo.get("t1", saved.ticket_id)
    assert loaded is not None
    assert loaded.model_dump(exclude={"etag"}) == saved.model_dump(exclude={"etag"})
    with pytest.raises(PreconditionFailed):
        await repo.add(saved)
    assert await repo.get("t2", saved.ticket_id) is None  # another tenant's partition
    assert await repo.get("t1", "not-an-id") is None


async def test_pages_are_newest_first_with_filters_and_tenant_bound_tokens(store: TableStore) -> None:
    repo = TicketRepository(store)
    ids = [new_ticket_id(NOW + timedelta(seconds=n)) for n in range(5)]
    for n, ticket_id in enumerate(ids):
        await repo.add(ticket("t1", ticket_id, "incident" if n % 2 == 0 else "change_request"))
    await repo.add(ticket("t2", new_ticket_id(NOW)))

    seen, token = [], None
    while True:
        items, token = await repo.page("t1", top=2, continuation_token=token)
        seen += [t.ticket_id for t in items]
        if token is None:
            break
    assert seen == list(reversed(ids))
    changes, _ = await repo.page("t1", type="change_request")
    assert [t.ticket_id for t in changes] == [ids[3], ids[1]]
    _, token = await repo.page("t1", top=1)
    assert token is not None
    with pytest.raises(BadRequest):
        await repo.page("t2", top=1, continuation_token=token)
    with pytest.raises(BadRequest):
        await repo.page("t1", continuation_token="%%%")


async def test_state_changes_apply_in_batches_and_report_missing_rows(store: TableStore) -> None:
    repo = TicketRepository(store)
    ids = [new_ticket_id(NOW + timedelta(milliseconds=n)) for n in range(150)]
    await asyncio.gather(*(repo.add(ticket("t1", ticket_id)) for ticket_id in ids))
    later = NOW + timedelta(hours=1)
    changes = [TicketStateChange(ticket_id, "2", later, "2026-06-01 13:00:00") for ticket_id in ids]
    result = await repo.apply_state_changes("t1", changes)
    assert (result.applied, result.missing) == (150, ())
    assert (await repo.count_by_state("t1")).states == {("incident", "2"): 150}
    moved = await repo.get("t1", ids[0])
    assert moved is not None
    assert (moved.state, moved.state_updated_at, moved.servicenow_updated_on) == (
        "2",
        later,
        "2026-06-01 13:00:00",
    )
    assert moved.name == "n"  # a merge: other columns untouched

    ghost = new_ticket_id(NOW)
    result = await repo.apply_state_changes(
        "t1", [TicketStateChange(ids[1], "6", later), TicketStateChange(ghost, "6", later)]
    )
    assert (result.applied, result.missing) == (1, (ghost,))
    assert await repo.get("t1", ghost) is None


async def test_one_of_many_racers_claims_a_key_and_etags_guard_the_claim(store: TableStore) -> None:
    repo = IdempotencyRepository(store)
    record = IdempotencyRecord(
        tenant_id="t1", key_hash="f" * 64, fingerprint="0" * 64, ticket_id=new_ticket_id(NOW),
        status="in_progress", created_by="u", created_by_name="U", created_at=NOW, lease_until=NOW,
    )  # fmt: skip
    outcomes = await asyncio.gather(*(repo.claim(record) for _ in range(10)), return_exceptions=True)
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, PreconditionFailed) for o in outcomes if isinstance(o, Exception))
    claimed = await repo.get("t1", "f" * 64)
    assert claimed is not None
    assert claimed.lease_until == NOW
    completed = await repo.replace(claimed.model_copy(update={"status": "completed", "lease_until": None}))
    with pytest.raises(PreconditionFailed):
        await repo.replace(claimed)
    with pytest.raises(PreconditionFailed):
        await repo.release(claimed)
    await repo.release(completed)
    assert await repo.get("t1", "f" * 64) is None


async def test_a_claim_keeps_the_time_of_its_last_create_until_it_is_cleared(store: TableStore) -> None:
    repo = IdempotencyRepository(store)
    claimed = await repo.claim(
        IdempotencyRecord(
            tenant_id="t2", key_hash="e" * 64, fingerprint="0" * 64, ticket_id=new_ticket_id(NOW),
            status="in_progress", created_by="u", created_by_name="U", created_at=NOW, lease_until=NOW,
        )
    )  # fmt: skip
    posted = NOW + timedelta(seconds=3)
    await repo.replace(
        claimed.model_copy(update={"posted_at": posted, "lease_until": posted + timedelta(seconds=90)})
    )
    stored = await repo.get("t2", "e" * 64)
    assert stored is not None
    assert (stored.posted_at, stored.lease_until) == (posted, posted + timedelta(seconds=90))
    await repo.replace(stored.model_copy(update={"posted_at": None, "lease_until": None}))
    cleared = await repo.get("t2", "e" * 64)
    assert cleared is not None
    assert (cleared.posted_at, cleared.lease_until) == (None, None)
