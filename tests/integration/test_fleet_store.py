"""`ConnectionRepository.fleet_page` against Azurite: every tenant's connection row, a page at a
time across partitions, filtered by status, with tokens that resume only their own filter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import BadRequest
from shared.models import ConnectionStatus
from shared.records import Connection
from shared.stores.connections import CONNECTIONS, ConnectionRepository
from shared.stores.tables import TableStore

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def connection(n: int, status: ConnectionStatus) -> Connection:
    return Connection(
        tenant_id=f"00000000-0000-4000-8000-{n:012d}",
        instance="contoso",
        instance_url="https://contoso.service-now.com",
        client_id="abc",
        status=status,
        watermarks={"incident": "2026-11-28 11:59:59"},
        updated_at=NOW,
    )


async def all_pages(
    repo: ConnectionRepository, status: ConnectionStatus | None, top: int
) -> list[list[Connection]]:
    pages: list[list[Connection]] = []
    token: str | None = None
    while True:
        rows, token = await repo.fleet_page(status=status, top=top, continuation_token=token)
        pages.append(rows)
        if token is None:
            return pages


async def test_every_connection_a_page_at_a_time_and_by_status(store: TableStore) -> None:
    repo = ConnectionRepository(store)
    statuses = [ConnectionStatus.CONNECTED, ConnectionStatus.REAUTHORIZATION_REQUIRED]
    saved = [await repo.put(connection(n, statuses[n % 3 == 0])) for n in range(7)]
    # Another kind of row in the same table is not a connection.
    table = await store.table(CONNECTIONS)
    await table.create_entity({"PartitionKey": saved[0].tenant_id, "RowKey": "other", "Status": "connected"})

    pages = await all_pages(repo, None, 3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [row.tenant_id for page in pages for row in page] == [row.tenant_id for row in saved]
    assert pages[0][1].watermarks == {"incident": "2026-11-28 11:59:59"}

    dead = await all_pages(repo, ConnectionStatus.REAUTHORIZATION_REQUIRED, 2)
    assert [row.tenant_id for page in dead for row in page] == [saved[n].tenant_id for n in (0, 3, 6)]


async def test_a_token_resumes_only_the_filter_it_was_issued_for(store: TableStore) -> None:
    repo = ConnectionRepository(store)
    for n in range(3):
        await repo.put(connection(n, ConnectionStatus.CONNECTED))
    _, token = await repo.fleet_page(status=ConnectionStatus.CONNECTED, top=1, continuation_token=None)
    assert token is not None
    for status in (None, ConnectionStatus.PENDING_AUTHORIZATION):
        with pytest.raises(BadRequest):
            await repo.fleet_page(status=status, top=1, continuation_token=token)
    for garbage in ("x", "eyJ0IjoiZmxlZXQ6KiJ9"):
        with pytest.raises(BadRequest):
            await repo.fleet_page(status=None, top=1, continuation_token=garbage)
    rows, _ = await repo.fleet_page(status=ConnectionStatus.CONNECTED, top=1, continuation_token=token)
    assert [row.tenant_id for row in rows] == [connection(1, ConnectionStatus.CONNECTED).tenant_id]


async def test_an_empty_table_is_one_empty_page(store: TableStore) -> None:
    repo = ConnectionRepository(store)
    assert await repo.fleet_page(status=None, top=50, continuation_token=None) == ([], None)
