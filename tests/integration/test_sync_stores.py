"""The sync's adapters: against Azurite the queue (what the queue trigger will read), the ticket rows'
sync columns (storage transactions counted on the wire), the connection row's sync fields and the
OAuth state cleanup; against the ServiceNow simulator the single pages the keyset paging reads."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueClient
from pydantic import SecretStr

from localdev.azurite import AzuriteEndpoints
from localdev.queues import decode_body
from localdev.servicenow import RunningSimulator, start_simulator
from localdev.servicenow.oauth import DEFAULT_CLIENTS
from shared.errors import UpstreamRejected
from shared.models import ConnectionStatus, SyncRequest
from shared.records import (
    CORRELATION_DISPLAY,
    Connection,
    OAuthState,
    Ticket,
    TicketStateChange,
    new_ticket_id,
)
from shared.servicenow.table_api import ServiceNowTables
from shared.servicenow.transport import RetryPolicy, new_http_client
from shared.services.sync_pull import FIELDS
from shared.stores.connections import ConnectionRepository, OAuthStateRepository
from shared.stores.queues import StorageQueue
from shared.stores.tables import TableStore
from shared.stores.tickets import TicketRepository

pytestmark = pytest.mark.integration


class CountRequests(AioHttpTransport):  # type: ignore[misc]
    """Counts HTTP requests to Table Storage: each is one storage transaction (a batch is one)."""

    count = 0

    async def send(self, request: Any, **kwargs: Any) -> Any:
        self.count += 1
        return await super().send(request, **kwargs)


async def test_a_message_is_base64_on_the_wire_and_the_queue_is_created_on_first_send(
    azurite: AzuriteEndpoints,
) -> None:
    name = f"sync-test-{uuid.uuid4().hex[:12]}"
    queue = StorageQueue.from_connection_string(azurite.connection_string, name)
    raw = QueueClient.from_connection_string(
        azurite.connection_string, name
    )  # no decoding: what the host sees
    try:
        body = SyncRequest(tenant_id="t-1", reason="manual", requested_at=datetime.now(UTC)).model_dump_json(
            by_alias=True
        )
        await queue.send(body)
        await queue.send(body)  # the queue exists now; a second send does not try to create it again
        received = [message async for message in raw.receive_messages(max_messages=5)]
        assert len(received) == 2
        decoded = decode_body(str(received[0].content))
        assert json.loads(decoded) == json.loads(body)
        assert SyncRequest.model_validate_json(decoded).reason == "manual"
    finally:
        await raw.delete_queue()
        await raw.close()
        await queue.aclose()


async def test_a_delayed_message_stays_invisible_until_its_delay_ends(azurite: AzuriteEndpoints) -> None:
    name = f"sync-test-{uuid.uuid4().hex[:12]}"
    queue = StorageQueue.from_connection_string(azurite.connection_string, name)
    raw = QueueClient.from_connection_string(azurite.connection_string, name)
    try:
        await queue.send("later", delay_s=300)
        assert [m async for m in raw.receive_messages(max_messages=5)] == []
        assert (await raw.get_queue_properties()).approximate_message_count == 1
    finally:
        await raw.delete_queue()
        await raw.close()
        await queue.aclose()


@pytest.fixture
async def tickets(azurite: AzuriteEndpoints) -> AsyncIterator[tuple[TicketRepository, CountRequests]]:
    counter = CountRequests()
    service = TableServiceClient.from_connection_string(azurite.connection_string, transport=counter)
    store = TableStore(service, table_prefix=f"s{uuid.uuid4().hex[:8]}")
    try:
        yield TicketRepository(store), counter
    finally:
        await store.aclose()


def _ticket(tenant_id: str, n: int, ticket_type: str) -> Ticket:
    now = datetime.now(UTC)
    return Ticket.model_validate(
        {
            "tenant_id": tenant_id,
            "ticket_id": new_ticket_id(now - timedelta(seconds=n)),
            "type": ticket_type,
            "sys_id": uuid.uuid4().hex,
            "number": f"INC{n:07d}",
            "instance_url": "https://contoso.service-now.com",
            "name": f"Ticket {n}",
            "description": "",
            "priority": 3,
            "due_date": date(2030, 1, 1),
            "recommendation_source": "user",
            "recommendation_category": "Identity",
            "created_by": "u",
            "created_by_name": "U",
            "created_at": now,
            "state": "1",
            "state_updated_at": now,
        }
    )


async def test_state_changes_go_in_transactions_of_at_most_50_and_deletions_are_flagged(
    tickets: tuple[TicketRepository, CountRequests],
) -> None:
    repository, counter = tickets
    tenant = str(uuid.uuid4())
    rows = [_ticket(tenant, n, "incident" if n % 2 else "change_request") for n in range(250)]
    for row in rows:
        await repository.add(row)
    other = _ticket(str(uuid.uuid4()), 999, "incident")
    await repository.add(other)

    counter.count = 0
    index = await repository.sync_index(tenant)
    assert counter.count == 1  # 250 rows (and their created events, not read): one page, one transaction
    assert set(index) == {row.ticket_id for row in rows}
    assert index[rows[1].ticket_id].type == "incident"
    assert index[rows[1].ticket_id].sys_id == rows[1].sys_id
    assert not index[rows[1].ticket_id].deleted

    changed_at = datetime(2025, 3, 1, 11, 0, 0, tzinfo=UTC)
    changes = [TicketStateChange(row.ticket_id, "2", changed_at, "2025-03-01 11:00:00") for row in rows]
    counter.count = 0
    result = await repository.apply_state_changes(tenant, changes)
    assert result.applied == 250
    assert counter.count == 5  # ceil(250 / 50) transactions (each row with its event), one partition

    counter.count = 0
    await repository.mark_deleted(tenant, [rows[0].ticket_id, rows[1].ticket_id], changed_at)
    assert counter.count == 1

    stored = await repository.get(tenant, rows[1].ticket_id)
    assert stored is not None
    assert stored.state == "2"
    assert stored.state_updated_at == changed_at
    assert stored.deleted_in_servicenow_at == changed_at
    assert stored.name == rows[1].name  # a merge: nothing else was touched
    again = await repository.sync_index(tenant)
    assert again[rows[1].ticket_id].deleted
    assert not again[rows[2].ticket_id].deleted
    untouched = await repository.get(other.tenant_id, other.ticket_id)
    assert untouched is not None
    assert untouched.state == "1"


async def test_a_state_transaction_merges_into_rows_that_exist_all_or_nothing(
    tickets: tuple[TicketRepository, CountRequests],
) -> None:
    repository, counter = tickets
    tenant = str(uuid.uuid4())
    rows = [_ticket(tenant, n, "incident") for n in range(5)]
    for row in rows:
        await repository.add(row)
    at = datetime(2025, 3, 1, 11, 0, 0, tzinfo=UTC)
    changes = [TicketStateChange(row.ticket_id, "2", at, "2025-03-01 11:00:00") for row in rows]

    counter.count = 0
    assert await repository.merge_states(tenant, changes) is None
    assert counter.count == 1  # one transaction, no read
    stored = await repository.get(tenant, rows[3].ticket_id)
    assert stored is not None
    assert (stored.state, stored.state_updated_at, stored.servicenow_updated_on) == (
        "2",
        at,
        "2025-03-01 11:00:00",
    )
    assert stored.name == rows[3].name  # a merge: nothing else was touched

    # A row that does not exist (another tenant's ticket, a deleted row) fails the transaction whole.
    ghost = new_ticket_id()
    later = [TicketStateChange(change.ticket_id, "6", at, None) for change in changes]
    mixed = [*later[:2], TicketStateChange(ghost, "6", at, None), *later[2:]]
    counter.count = 0
    assert await repository.merge_states(tenant, mixed) == ghost
    assert counter.count == 1
    assert {t.state async for t in repository.every_ticket(tenant)} == {"2"}  # nothing written
    assert await repository.get(tenant, ghost) is None  # and nothing made
    assert await repository.merge_states(str(uuid.uuid4()), later[:1]) == rows[0].ticket_id  # not theirs

    with pytest.raises(ValueError, match="at most 50"):
        await repository.merge_states(
            tenant, [TicketStateChange(new_ticket_id(), "1", at) for _ in range(51)]
        )


# --- the connection row's sync fields and the OAuth state cleanup -----------------------------------------


@pytest.fixture
async def store(azurite: AzuriteEndpoints) -> AsyncIterator[TableStore]:
    table_store = TableStore(
        TableServiceClient.from_connection_string(azurite.connection_string),
        table_prefix=f"s{uuid.uuid4().hex[:8]}",
    )
    try:
        yield table_store
    finally:
        await table_store.aclose()


async def test_the_sync_fields_of_a_connection_survive_the_table_and_the_lease_compares_equal(
    store: TableStore,
) -> None:
    connections = ConnectionRepository(store)
    now = datetime.now(UTC)
    tenant = str(uuid.uuid4())
    await connections.put(
        Connection(
            tenant_id=tenant, instance="i", instance_url="https://i.service-now.com", client_id="c",
            status=ConnectionStatus.CONNECTED, updated_at=now,
        )
    )  # fmt: skip
    lease = now + timedelta(minutes=10)
    leased = await connections.update(tenant, lambda _: {"sync_lease_until": lease})
    assert leased is not None
    await connections.update(
        tenant,
        lambda _: {"sync_not_before": now + timedelta(hours=1), "last_sync_started_at": now},
    )

    stored = await connections.get(tenant)
    assert stored is not None
    # The sync releases its lease only while the row still holds the very value it wrote.
    assert stored.sync_lease_until == leased.sync_lease_until
    assert stored.sync_not_before == now + timedelta(hours=1)
    assert stored.last_sync_started_at == now


def _state(expires_at: datetime) -> OAuthState:
    return OAuthState(
        state_id=uuid.uuid4().hex, tenant_id=str(uuid.uuid4()), user_id="u", user_name="U",
        instance_url="https://i.service-now.com", client_id="c",
        created_at=expires_at - timedelta(minutes=10), expires_at=expires_at,
    )  # fmt: skip


async def test_expired_oauth_states_are_deleted_across_partitions_at_most_limit_a_call(
    store: TableStore,
) -> None:
    states = OAuthStateRepository(store)
    now = datetime.now(UTC)
    old = [_state(now - timedelta(days=2, minutes=n)) for n in range(5)]
    recent = _state(now - timedelta(hours=3))  # expired, but less than a day ago: kept for now
    live = _state(now + timedelta(minutes=10))
    for state in [*old, recent, live]:
        await states.add(state)

    cutoff = now - timedelta(days=1)
    assert await states.delete_expired(cutoff, limit=3) == 3
    assert await states.delete_expired(cutoff, limit=3) == 2
    assert await states.delete_expired(cutoff, limit=3) == 0

    assert all([await states.get(state.state_id) is None for state in old])
    assert await states.get(recent.state_id) is not None
    assert await states.get(live.state_id) is not None


# --- single pages from the ServiceNow simulator (keyset paging) ---------------------------------------------


sent: list[httpx.URL] = []  # the requests the Table API client made in the current test


class _StaticToken:
    """Stands in for AccessTokens: one access token minted by the simulator."""

    def __init__(self, token: str) -> None:
        self.token = SecretStr(token)

    async def access_token(self, connection: Connection) -> SecretStr:
        return self.token


@pytest.fixture
async def servicenow() -> AsyncIterator[tuple[RunningSimulator, ServiceNowTables, Connection]]:
    simulator = await start_simulator()
    sent.clear()

    async def log(request: httpx.Request) -> None:
        sent.append(request.url)

    http = new_http_client(timeout=httpx.Timeout(2.0), event_hooks={"request": [log]})
    try:
        [(client_id, client_secret)] = DEFAULT_CLIENTS.items()
        oauth = simulator.state.oauth
        code = oauth.issue_code(
            client_id=client_id, redirect_uri="https://x", scope="useraccount", code_challenge=None
        )
        issued = oauth.exchange_code(
            code=code,
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri="https://x",
            code_verifier=None,
        )
        tables = ServiceNowTables(
            http, cast(Any, _StaticToken(issued.access_token.token)), retry=RetryPolicy(attempts=1)
        )
        connection = Connection(
            tenant_id="t", instance=simulator.url, instance_url=simulator.url, client_id=client_id,
            status=ConnectionStatus.CONNECTED, updated_at=datetime.now(UTC),
        )  # fmt: skip
        yield simulator, tables, connection
    finally:
        await http.aclose()
        await simulator.aclose()


async def test_a_page_is_one_request_and_the_keyset_queries_work_on_the_instance(
    servicenow: tuple[RunningSimulator, ServiceNowTables, Connection],
) -> None:
    simulator, tables, connection = servicenow
    state = simulator.state
    ids = [new_ticket_id() for _ in range(7)]
    # Start at the top of a second, so that the first four records share one (the test's premise).
    state.clock.advance(1.01 - state.clock.now().microsecond / 1e6)
    first = state.seed("incident", 4, {"correlation_display": CORRELATION_DISPLAY, "correlation_id": ids[:4]})
    state.clock.advance(1)
    later = state.seed("incident", 3, {"correlation_display": CORRELATION_DISPLAY, "correlation_id": ids[4:]})
    state.seed("incident", 2, {"correlation_display": "Someone else"})
    second = first[0]["sys_updated_on"]
    base = f"correlation_display={CORRELATION_DISPLAY}"
    order = "ORDERBYsys_updated_on^ORDERBYsys_id"
    state.requests.clear()

    page = await tables.page(connection, "incident", f"{base}^{order}", FIELDS, limit=3)
    assert [r["sys_id"] for r in page] == sorted(r["sys_id"] for r in first)[:3]
    assert set(page[0]) == set(FIELDS)
    rest = await tables.page(
        connection, "incident", f"{base}^sys_updated_on>={second}^{order}", FIELDS, limit=5
    )
    # The boundary second comes back whole, then the next second's records.
    assert [r["sys_id"] for r in rest[:4]] == sorted(r["sys_id"] for r in first)
    assert rest[4]["sys_id"] == min(r["sys_id"] for r in later)
    within = await tables.page(
        connection,
        "incident",
        f"{base}^sys_updated_on={second}^sys_id>{page[-1]['sys_id']}^ORDERBYsys_id",
        FIELDS,
    )
    assert [r["sys_id"] for r in within] == sorted(r["sys_id"] for r in first)[3:]
    after = await tables.page(connection, "incident", f"{base}^sys_updated_on>{second}^{order}", FIELDS)
    assert {r["sys_id"] for r in after} == {r["sys_id"] for r in later}
    assert sum(state.requests.values()) == 4  # one request per page, no Link followed

    huge = await tables.page(connection, "incident", order, FIELDS, limit=50_000)
    assert len(huge) == 9
    assert sent[-1].params["sysparm_limit"] == "1000"  # never more than 1,000 a page
    assert sent[-1].params["sysparm_no_count"] == "true"  # no count(*) on the instance

    with pytest.raises(UpstreamRejected, match="Invalid table"):
        await tables.page(connection, "no_such_table", order, FIELDS)
