"""`ConnectionRepository.recent` against Azurite: two repositories are two worker processes over
one table. What a process writes it sees at once; another's write within the cache's bound."""

from __future__ import annotations

import asyncio

from shared.models import ConnectionStatus
from shared.stores.connections import CONNECTION_CACHE_TTL_S, ConnectionRepository
from shared.stores.tables import TableStore
from tests.integration.test_table_repositories import connection


class Ticking:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_process_sees_its_own_removal_and_reauthorization_at_once(store: TableStore) -> None:
    repo = ConnectionRepository(store, clock=Ticking())
    await repo.put(connection("t1", status=ConnectionStatus.CONNECTED))
    assert (await repo.recent("t1")) is not None
    await repo.update("t1", lambda row: {"status": ConnectionStatus.PENDING_AUTHORIZATION})
    seen = await repo.recent("t1")
    assert seen is not None
    assert seen.status == ConnectionStatus.PENDING_AUTHORIZATION
    await repo.delete("t1")
    assert await repo.recent("t1") is None


async def test_another_process_sees_a_change_within_the_bound_and_not_before(store: TableStore) -> None:
    ticking = Ticking()
    here, there = ConnectionRepository(store, clock=ticking), ConnectionRepository(store, clock=ticking)
    await there.put(connection("t2", status=ConnectionStatus.CONNECTED, client_id="old"))
    assert (await here.recent("t2")).client_id == "old"  # type: ignore[union-attr]
    await there.update("t2", lambda row: {"client_id": "new"})
    ticking.now += CONNECTION_CACHE_TTL_S - 0.5
    assert (await here.recent("t2")).client_id == "old"  # type: ignore[union-attr]  # served from memory
    ticking.now += 1.0
    assert (await here.recent("t2")).client_id == "new"  # type: ignore[union-attr]
    await there.delete("t2")
    ticking.now += CONNECTION_CACHE_TTL_S + 0.1
    assert await here.recent("t2") is None


async def test_a_read_overlapping_a_removal_cannot_bring_the_old_row_back(store: TableStore) -> None:
    await ConnectionRepository(store).put(connection("t3", status=ConnectionStatus.CONNECTED))
    repo = ConnectionRepository(store, clock=Ticking())  # a cold process
    reading = asyncio.create_task(repo.get("t3"))  # the read is out ...
    await asyncio.sleep(0)
    await repo.delete("t3")  # ... when this process removes the row
    await reading  # whatever it answered, it started before the removal: not remembered
    assert await repo.recent("t3") is None


async def test_get_always_reads_the_table(store: TableStore) -> None:
    ticking = Ticking()
    here, there = ConnectionRepository(store, clock=ticking), ConnectionRepository(store, clock=ticking)
    await there.put(connection("t4", client_id="old"))
    assert (await here.recent("t4")).client_id == "old"  # type: ignore[union-attr]
    await there.update("t4", lambda row: {"client_id": "new"})
    assert (await here.get("t4")).client_id == "new"  # type: ignore[union-attr]
    assert (await here.recent("t4")).client_id == "new"  # type: ignore[union-attr]  # and refreshes it
