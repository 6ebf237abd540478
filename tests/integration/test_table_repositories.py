"""The Table Storage repositories against Azurite, through the real azure-data-tables client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import PreconditionFailed
from shared.models import ConnectionStatus
from shared.records import Connection, OAuthState
from shared.stores.connections import ConnectionRepository, OAuthStateRepository
from shared.stores.tables import TableStore

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def connection(tenant: str, **changes: object) -> Connection:
    base = Connection(
        tenant_id=tenant,
        instance="contoso",
        instance_url="https://contoso.service-now.com",
        client_id="abc",
        status=ConnectionStatus.PENDING_AUTHORIZATION,
        state_names={"incident": {"6": "Fixed"}},
        watermarks={"incident": "2026-11-28 11:59:59"},
        updated_at=NOW,
    )
    return base.model_copy(update=changes)


async def test_connection_round_trip_keeps_types_and_json_fields(store: TableStore) -> None:
    repo = ConnectionRepository(store)
    saved = await repo.put(connection("t1", connected_at=NOW))
    loaded = await repo.get("t1")
    assert loaded is not None
    assert loaded.etag == saved.etag
    assert loaded.model_dump(exclude={"etag"}) == saved.model_dump(exclude={"etag"})
    assert loaded.connected_at == NOW
    assert loaded.state_names == {"incident": {"6": "Fixed"}}
    assert await repo.get("nobody") is None


async def test_replace_with_a_stale_etag_is_refused(store: TableStore) -> None:
    repo = ConnectionRepository(store)
    first = await repo.put(connection("t2"))
    updated = await repo.replace(first.model_copy(update={"status": ConnectionStatus.CONNECTED}))
    with pytest.raises(PreconditionFailed):
        await repo.replace(first.model_copy(update={"last_error": "late writer"}))
    loaded = await repo.get("t2")
    assert loaded is not None
    assert (loaded.status, loaded.last_error, loaded.etag) == (ConnectionStatus.CONNECTED, None, updated.etag)


async def test_list_by_status_and_delete(store: TableStore) -> None:
    repo = ConnectionRepository(store)
    await repo.put(connection("a", status=ConnectionStatus.CONNECTED))
    await repo.put(connection("b", status=ConnectionStatus.REAUTHORIZATION_REQUIRED))
    await repo.put(connection("c", status=ConnectionStatus.CONNECTED))
    assert sorted([c.tenant_id async for c in repo.with_status(ConnectionStatus.CONNECTED)]) == ["a", "c"]
    await repo.delete("a")
    await repo.delete("a")  # deleting what is gone is not an error
    assert [c.tenant_id async for c in repo.with_status(ConnectionStatus.CONNECTED)] == ["c"]


async def test_a_state_is_consumed_by_exactly_one_of_many_racers(store: TableStore) -> None:
    repo = OAuthStateRepository(store)
    state = OAuthState(
        state_id="s" * 43,
        tenant_id="t",
        user_id="u",
        user_name="Ada",
        instance_url="https://contoso.service-now.com",
        client_id="abc",
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=10),
    )
    await repo.add(state)
    with pytest.raises(PreconditionFailed):
        await repo.add(state)
    loaded = await repo.get(state.state_id)
    assert loaded is not None
    outcomes = await asyncio.gather(*(repo.consume(loaded, NOW) for _ in range(10)), return_exceptions=True)
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, PreconditionFailed) for o in outcomes if isinstance(o, Exception))
    final = await repo.get(state.state_id)
    assert final is not None
    assert final.consumed_at == NOW
