"""Creates ServiceNow did not confirm, end to end: 202 `creating`, the `ticket-creates` queue worker
on the local host finishing them with no retry from the client, and the timer deleting expired
idempotency claims (and the repository's bounded purge against Azurite)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables.aio import TableServiceClient

from localdev.azurite import AzuriteEndpoints
from shared.records import IdempotencyRecord, new_ticket_id
from shared.services.idempotency_claims import idempotency_key_hash
from shared.services.ticket_policy import TicketingPolicy
from shared.stores.idempotency import DEFERRED_SINCE, IdempotencyRepository
from shared.stores.tables import TableStore, to_entity
from tests.e2e.conftest import Stack
from tests.e2e.sync_api import run_timer
from tests.e2e.tickets_api import (
    connected_tenant,
    create,
    fast_servicenow,
    fault,
    get,
    records,
    settled,
    ticket_body,
)

pytestmark = pytest.mark.e2e

INCIDENTS = "/api/now/table/incident"
SHORT_WINDOW = TicketingPolicy(settle_window=timedelta(seconds=2), max_retry_wait_s=1.0)


async def test_a_create_that_timed_out_and_made_nothing_is_made_by_the_worker(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    fast_servicenow(stack, timeout_s=0.5, policy=SHORT_WINDOW)
    # Held past our timeout, then cancelled by the instance: nothing is made.
    await fault(stack.simulator, "timeout", method="POST", path_prefix=INCIDENTS, delay_seconds=1.0)
    accepted = (await create(stack, tenant, ticket_body(), key="made-later", expect=202)).json()
    assert accepted["status"] == "creating"
    ticket = await settled(stack, tenant, accepted["id"])
    [record] = await records(stack.simulator, "incident")
    assert (ticket["status"], ticket["number"], ticket["sysId"]) == (
        "created",
        record["number"],
        record["sys_id"],
    )
    assert record["correlation_id"] == accepted["id"]
    assert (await stack.simulator.stats())["POST /api/now/table/incident"] == 2


async def test_a_create_servicenow_refuses_after_the_202_makes_the_ticket_failed(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    fast_servicenow(stack, timeout_s=0.5, policy=SHORT_WINDOW)
    await fault(stack.simulator, "timeout", method="POST", path_prefix=INCIDENTS, delay_seconds=1.0)
    await fault(stack.simulator, "403", method="POST", path_prefix=INCIDENTS)
    accepted = (await create(stack, tenant, ticket_body(), key="refused-later", expect=202)).json()
    ticket = await settled(stack, tenant, accepted["id"])
    assert ticket["status"] == "failed"
    assert ticket["failureReason"] == (
        "ServiceNow refused to create a incident record (HTTP 403): Operation Failed: Denied by an ACL, "
        "business rule or data policy."
    )
    assert (ticket["number"], ticket["url"]) == ("", "")
    # The key keeps answering with the failed ticket and creates nothing.
    assert (await create(stack, tenant, ticket_body(), key="refused-later", expect=200)).json() == ticket
    assert await records(stack.simulator, "incident") == []
    assert (await stack.simulator.stats())["POST /api/now/table/incident"] == 2
    summary = await get(stack, tenant, "/summary")
    assert summary["incident"]["total"] == 0  # no record, so on no card


async def test_the_timer_deletes_claims_made_over_a_week_ago(stack: Stack) -> None:
    tenant = stack.new_tenant()
    now = datetime.now(UTC)
    claims = stack.container.idempotency
    for key, completed, made_days_ago, deferred in [
        ("expired", now - timedelta(days=7), 8, True),
        ("expired-open", None, 8, False),
        ("kept", now - timedelta(days=6), 6, True),
        ("open", None, 6, False),
        ("its ticket still creating", None, 8, True),  # deferred, in progress: its row needs it
    ]:
        made = now - timedelta(days=made_days_ago)
        await claims.claim(claim(tenant, key, completed, created=made, deferred=deferred))
    await run_timer(stack)
    left = {row["RowKey"] for row in await stack.rows("idempotency", tenant)}
    kept = ("kept", "open", "its ticket still creating")
    assert left == {idempotency_key_hash(key) for key in kept}


def claim(
    tenant: str, key: str, completed: datetime | None, *, created: datetime, deferred: bool = True
) -> IdempotencyRecord:
    return IdempotencyRecord(
        tenant_id=tenant, key_hash=idempotency_key_hash(key), fingerprint="f" * 64,
        ticket_id=new_ticket_id(created), status="in_progress" if completed is None else "completed",
        created_by="u", created_by_name="U", created_at=created, completed_at=completed, deferred=deferred,
    )  # fmt: skip


@pytest.fixture
async def own_tables(azurite: AzuriteEndpoints) -> AsyncIterator[TableStore]:
    """Tables of this test alone: the purge queries across partitions."""
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    store = TableStore(service, table_prefix=f"t{uuid.uuid4().hex[:8]}")
    yield store
    await store.aclose()


async def test_the_repository_purges_claims_made_before_the_cutoff_across_tenants_in_bounded_batches(
    own_tables: TableStore,
) -> None:
    repo = IdempotencyRepository(own_tables)
    cutoff = datetime(2026, 6, 1, tzinfo=UTC)
    long_ago, lately = cutoff - timedelta(days=30), cutoff + timedelta(seconds=1)
    for index in range(4):
        await repo.claim(claim(f"tenant-{index}", "old", cutoff - timedelta(seconds=1), created=long_ago))
    await repo.claim(claim("tenant-4", "old", None, created=cutoff - timedelta(seconds=1), deferred=False))
    await repo.claim(claim("tenant-0", "recent", lately, created=lately))
    await repo.claim(claim("tenant-0", "open", None, created=lately))
    assert await repo.delete_expired(cutoff, limit=3) == 3
    assert await repo.delete_expired(cutoff, limit=3) == 2
    assert await repo.delete_expired(cutoff, limit=3) == 0
    assert await repo.delete_expired(cutoff, limit=0) == 0
    assert await repo.get("tenant-0", idempotency_key_hash("recent")) is not None
    assert await repo.get("tenant-0", idempotency_key_hash("open")) is not None
    assert all([await repo.get(f"tenant-{n}", idempotency_key_hash("old")) is None for n in range(5)])


async def test_the_repository_finds_claims_in_progress_nobody_wrote_lately(own_tables: TableStore) -> None:
    """The sweep's query: deferred claims in progress; Table Storage's own `Timestamp` says when
    a claim was last written."""
    repo = IdempotencyRepository(own_tables)
    now = datetime.now(UTC)
    await repo.claim(claim("tenant-0", "open", None, created=now - timedelta(hours=1)))
    await repo.claim(claim("tenant-1", "open", None, created=now - timedelta(hours=2)))
    await repo.claim(claim("tenant-0", "done", now, created=now - timedelta(hours=1)))
    await repo.claim(claim("tenant-0", "too old", None, created=now - timedelta(days=10)))
    # Its create ended in its request: the row says so, and the sweep has nothing to watch.
    await repo.claim(claim("tenant-1", "ended", None, created=now - timedelta(hours=1), deferred=False))
    horizon = now - timedelta(days=2)
    later = now + timedelta(minutes=5)  # all of them were written before then
    stale = await repo.stale_in_progress(written_before=later, created_after=horizon, limit=10)
    assert sorted((c.tenant_id, c.key_hash) for c in stale) == [
        ("tenant-0", idempotency_key_hash("open")),
        ("tenant-1", idempotency_key_hash("open")),
    ]
    assert len(await repo.stale_in_progress(written_before=later, created_after=horizon, limit=1)) == 1
    assert await repo.stale_in_progress(written_before=later, created_after=horizon, limit=0) == []
    earlier = now - timedelta(minutes=5)  # written just now: not stale
    assert await repo.stale_in_progress(written_before=earlier, created_after=horizon, limit=10) == []


async def test_claims_written_before_the_deferred_column_are_still_swept(own_tables: TableStore) -> None:
    """A claim of the version before `Deferred` existed has no such property: in progress and made
    before `DEFERRED_SINCE`, the sweep lists it, as that version's sweep did."""
    repo = IdempotencyRepository(own_tables)
    made = DEFERRED_SINCE - timedelta(hours=1)
    legacy = claim("tenant-0", "legacy", None, created=made)
    entity = to_entity(legacy, legacy.tenant_id, legacy.key_hash)
    del entity["Deferred"]
    table = await own_tables.table("idempotency")
    await table.create_entity(entity)
    later = datetime.now(UTC) + timedelta(minutes=5)
    stale = await repo.stale_in_progress(
        written_before=later, created_after=made - timedelta(days=1), limit=10
    )
    assert [c.key_hash for c in stale] == [idempotency_key_hash("legacy")]
    assert stale[0].deferred is False  # read as the model's default
