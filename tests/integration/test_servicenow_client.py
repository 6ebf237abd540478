"""Our ServiceNow client (OAuth, access tokens, Table API) against the instance simulator.

Real httpx over loopback to the simulator, real Table Storage (Azurite) for the connection row;
the secret store is the in-memory fake of our own port (Key Vault is covered elsewhere).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from azure.data.tables.aio import TableServiceClient
from pydantic import SecretStr

from localdev.azurite import AzuriteEndpoints
from localdev.servicenow import RunningSimulator, start_simulator
from shared.errors import ConnectionNotReady, ReauthorizationRequired, UpstreamRejected, UpstreamUnavailable
from shared.models import ConnectionStatus
from shared.records import Connection, TokenSet
from shared.servicenow.oauth import ServiceNowOAuthClient, authorize_url
from shared.servicenow.table_api import ServiceNowTables
from shared.servicenow.transport import RetryPolicy, new_http_client
from shared.services.access_tokens import AccessTokens
from shared.stores.connections import ConnectionRepository
from shared.stores.tables import TableStore
from tests.fakes.secrets import InMemorySecretStore
from tests.integration.servicenow_simulator.helpers import CLIENT_ID, CLIENT_SECRET, click_consent, query_of

REDIRECT_URI = "https://connector.example/api/oauth/callback"
FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.05, max_retry_after_s=2)
FIELDS = ["sys_id", "number", "state", "priority", "correlation_id", "short_description"]


class CountingSecrets(InMemorySecretStore):
    """The fake secret store, counting token reads (the 'Key Vault calls' of these tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.token_reads = 0

    async def get_tokens(self, tenant_id: str, *, fresh: bool = False) -> TokenSet | None:
        self.token_reads += 1
        return await super().get_tokens(tenant_id, fresh=fresh)


@dataclass
class Client:
    simulator: RunningSimulator
    control: httpx.AsyncClient
    connection: Connection
    secrets: CountingSecrets
    connections: ConnectionRepository
    tokens: AccessTokens
    tables: ServiceNowTables
    oauth: ServiceNowOAuthClient

    async def stats(self) -> dict[str, int]:
        counts: dict[str, int] = (await self.control.get("/__sim/stats")).json()["requests"]
        return counts

    async def fault(self, **rule: object) -> None:
        response = await self.control.post("/__sim/faults", json=rule)
        assert response.status_code in (200, 201), response.text


@pytest.fixture
async def client(azurite: AzuriteEndpoints) -> AsyncIterator[Client]:
    simulator = await start_simulator()
    store = TableStore(
        TableServiceClient.from_connection_string(azurite.connection_string),
        table_prefix=f"c{uuid.uuid4().hex[:8]}",
    )
    http = new_http_client(timeout=httpx.Timeout(2.0))
    control = httpx.AsyncClient(base_url=simulator.url, timeout=5)
    try:
        secrets = CountingSecrets()
        connections = ConnectionRepository(store)
        oauth = ServiceNowOAuthClient(http, retry=FAST)
        tenant = str(uuid.uuid4())
        connection = await connections.put(
            Connection(
                tenant_id=tenant, instance=simulator.url, instance_url=simulator.url, client_id=CLIENT_ID,
                status=ConnectionStatus.CONNECTED, updated_at=datetime.now(UTC),
            )
        )  # fmt: skip
        await secrets.set_client_secret(tenant, SecretStr(CLIENT_SECRET))
        await secrets.set_tokens(tenant, await _authorize(control, oauth, simulator.url))
        tokens = AccessTokens(secrets=secrets, oauth=oauth, connections=connections)
        tables = ServiceNowTables(http, tokens, retry=FAST)
        yield Client(simulator, control, connection, secrets, connections, tokens, tables, oauth)
    finally:
        await control.aclose()
        await http.aclose()
        await store.aclose()
        await simulator.aclose()


async def _authorize(control: httpx.AsyncClient, oauth: ServiceNowOAuthClient, instance_url: str) -> TokenSet:
    verifier = "v" * 64
    url = authorize_url(
        instance_url, client_id=CLIENT_ID, redirect_uri=REDIRECT_URI, state="s1", verifier=verifier
    )
    params = dict(httpx.URL(url).params)
    answer = await click_consent(control, params, "allow")
    code = query_of(answer.headers["Location"])["code"]
    return await oauth.exchange_code(
        instance_url, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET), code=code,
        redirect_uri=REDIRECT_URI, verifier=verifier, state="s1",
    )  # fmt: skip


async def test_code_exchange_gives_a_token_set_with_servicenow_lifespans(client: Client) -> None:
    tokens = await client.secrets.get_tokens(client.connection.tenant_id)
    assert tokens is not None
    lifetime = tokens.access_token_expires_at - datetime.now(UTC)
    assert 1700 < lifetime.total_seconds() <= 1800
    assert 99 <= (tokens.refresh_token_expires_at - datetime.now(UTC)).days < 100


async def test_create_and_find_by_sys_id_and_correlation_id(client: Client) -> None:
    record = await client.tables.create(
        client.connection, "incident",
        {"short_description": "Turn on MFA", "impact": "2", "urgency": "2", "correlation_id": "ticket-1"},
    )  # fmt: skip
    assert record["number"].startswith("INC")
    assert record["priority"] == "3"  # computed by the instance from impact and urgency
    fetched = await client.tables.find_one(
        client.connection, "incident", f"sys_id={record['sys_id']}", FIELDS
    )
    assert fetched is not None
    assert fetched["short_description"] == "Turn on MFA"
    found = await client.tables.find_one(client.connection, "incident", "correlation_id=ticket-1", FIELDS)
    assert found is not None
    assert found["sys_id"] == record["sys_id"]
    assert await client.tables.find_one(client.connection, "incident", "correlation_id=nope", FIELDS) is None
    assert await client.tables.find_one(client.connection, "incident", f"sys_id={'0' * 32}", FIELDS) is None


async def test_a_valid_cached_token_is_not_read_from_the_secret_store_again(client: Client) -> None:
    for _ in range(5):
        await client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS)
    assert client.secrets.token_reads == 1


async def test_query_follows_link_paging_in_a_stable_order(client: Client) -> None:
    seeded = await client.control.post(
        "/__sim/tables/incident/seed", json={"count": 25, "template": {"short_description": "seeded {n}"}}
    )
    assert seeded.status_code in (200, 201)
    await client.control.post("/__sim/stats/reset")
    pages = [
        page
        async for page in client.tables.query(
            client.connection, "incident", "ORDERBYnumber", FIELDS, page_size=10
        )
    ]
    assert [len(page) for page in pages] == [10, 10, 5]
    numbers = [record["number"] for page in pages for record in page]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 25
    assert (await client.stats())["GET /api/now/table/incident"] == 3


async def test_an_expired_access_token_is_refreshed_once_and_the_request_replayed(client: Client) -> None:
    before = await client.secrets.get_tokens(client.connection.tenant_id)
    await client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS)  # warm the cache
    await client.control.post("/__sim/tokens/expire", json={})
    await client.control.post("/__sim/stats/reset")
    results = await asyncio.gather(
        *(client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS) for _ in range(20))
    )
    assert results == [None] * 20
    stats = await client.stats()
    assert stats["POST /oauth_token.do"] == 1  # twenty 401s, one refresh
    after = await client.secrets.get_tokens(client.connection.tenant_id)
    assert before is not None
    assert after is not None
    assert after.access_token.get_secret_value() != before.access_token.get_secret_value()
    assert after.refresh_token.get_secret_value() == before.refresh_token.get_secret_value()  # not rotated
    row = await client.connections.get(client.connection.tenant_id)
    assert row is not None
    assert row.access_token_expires_at == after.access_token_expires_at


async def test_a_revoked_grant_requires_reauthorization(client: Client) -> None:
    await client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS)
    await client.control.post("/__sim/tokens/revoke", json={})
    with pytest.raises(ReauthorizationRequired):
        await client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS)
    row = await client.connections.get(client.connection.tenant_id)
    assert row is not None
    assert row.status == ConnectionStatus.REAUTHORIZATION_REQUIRED
    assert row.last_error
    assert "re-authorize" in row.last_error


async def test_a_tenant_never_authorized_is_not_ready(client: Client) -> None:
    stranger = client.connection.model_copy(update={"tenant_id": str(uuid.uuid4())})
    with pytest.raises(ConnectionNotReady):
        await client.tables.find_one(stranger, "incident", "ORDERBYnumber", FIELDS)


async def test_reads_are_retried_through_a_429_burst_honouring_retry_after(client: Client) -> None:
    await client.fault(
        kind="429", count=2, method="GET", path_prefix="/api/now/table/incident", retry_after=0
    )
    await client.control.post("/__sim/stats/reset")
    assert await client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS) is None
    assert (await client.stats())["GET /api/now/table/incident"] == 3


async def test_a_long_outage_is_unavailable_with_a_retry_after(client: Client) -> None:
    await client.fault(kind="503", count=10, method="GET", path_prefix="/api/now/table/incident")
    with pytest.raises(UpstreamUnavailable) as raised:
        await client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS)
    assert raised.value.retry_after >= 1


async def test_a_create_is_sent_once_even_when_the_answer_is_lost(client: Client) -> None:
    await client.fault(
        kind="drop", count=1, method="POST", path_prefix="/api/now/table/incident", after_processing=True
    )
    await client.control.post("/__sim/stats/reset")
    with pytest.raises(UpstreamUnavailable):
        await client.tables.create(
            client.connection, "incident", {"short_description": "x", "correlation_id": "lost"}
        )
    assert (await client.stats())["POST /api/now/table/incident"] == 1
    found = await client.tables.find_one(client.connection, "incident", "correlation_id=lost", FIELDS)
    assert found is not None  # the record exists: the caller must look before creating again


async def test_a_refused_record_carries_servicenows_message(client: Client) -> None:
    with pytest.raises(UpstreamRejected) as raised:
        await client.tables.create(client.connection, "no_such_table", {"short_description": "x"})
    assert "Invalid table no_such_table" in raised.value.message


async def test_refresh_with_a_wrong_client_secret_is_a_dead_grant(client: Client) -> None:
    await client.secrets.set_client_secret(client.connection.tenant_id, SecretStr("wrong-secret-value"))
    await client.control.post("/__sim/tokens/expire", json={})
    with pytest.raises(ReauthorizationRequired):
        await client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS)


async def test_a_token_cached_for_one_instance_is_never_sent_to_another(client: Client) -> None:
    await client.tables.find_one(
        client.connection, "incident", "ORDERBYnumber", FIELDS
    )  # cache instance 1's token
    second = await start_simulator()
    try:
        async with httpx.AsyncClient(base_url=second.url, timeout=5) as control:
            row = await client.connections.get(client.connection.tenant_id)
            assert row is not None
            moved = await client.connections.replace(
                row.model_copy(update={"instance": second.url, "instance_url": second.url})
            )
            await client.secrets.set_tokens(
                moved.tenant_id, await _authorize(control, client.oauth, second.url)
            )
            assert await client.tables.find_one(moved, "incident", "ORDERBYnumber", FIELDS) is None
            counts = (await control.get("/__sim/stats")).json()["requests"]
        # One request, accepted at once: no 401 from an instance-1 token, no refresh.
        assert counts.get("GET /api/now/table/incident") == 1
        assert counts.get("POST /oauth_token.do") == 1  # the code exchange, no refresh
    finally:
        await second.aclose()


async def test_a_refresh_racing_with_removal_does_not_bring_tokens_back(client: Client) -> None:
    before = client.secrets.values.copy()
    await client.connections.delete(client.connection.tenant_id)  # removed while a request is in flight
    await client.control.post("/__sim/tokens/expire", json={})
    with pytest.raises(ConnectionNotReady):
        await client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS)
    assert client.secrets.values == before  # the refreshed tokens were not stored for nobody


async def test_a_stale_failure_does_not_flip_a_newer_authorization(client: Client) -> None:
    stale = client.connection.model_copy(update={"connected_at": datetime(2020, 1, 1, tzinfo=UTC)})
    await client.control.post("/__sim/tokens/revoke", json={})
    with pytest.raises(ReauthorizationRequired):
        await client.tables.find_one(stale, "incident", "ORDERBYnumber", FIELDS)
    row = await client.connections.get(client.connection.tenant_id)
    assert row is not None
    assert row.status == ConnectionStatus.CONNECTED  # the row was connected after the failing grant


@pytest.mark.parametrize(
    ("fault", "ambiguous"),
    [
        ({"kind": "503", "retry_after": 1}, False),  # the instance's rate limiting or maintenance
        ({"kind": "429", "retry_after": 1}, False),
        ({"kind": "503"}, True),
        ({"kind": "500"}, True),
        ({"kind": "drop"}, True),
    ],
)
async def test_a_failed_create_says_whether_the_record_may_exist(
    client: Client, fault: dict[str, object], ambiguous: bool
) -> None:
    await client.fault(**fault, method="POST", path_prefix="/api/now/table/incident")
    with pytest.raises(UpstreamUnavailable) as raised:
        await client.tables.create(client.connection, "incident", {"correlation_id": "maybe"})
    assert raised.value.ambiguous is ambiguous


async def test_a_create_that_never_reached_the_instance_is_not_ambiguous(client: Client) -> None:
    await client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS)  # token in memory
    closed = await start_simulator()
    url = closed.url
    await closed.aclose()  # nothing listens on its port any more
    moved = client.connection.model_copy(update={"instance_url": url})
    with pytest.raises(UpstreamUnavailable) as raised:
        await client.tables.create(moved, "incident", {"correlation_id": "never-sent"})
    assert raised.value.ambiguous is False


async def test_before_post_runs_after_the_token_and_right_before_each_post(client: Client) -> None:
    """Also before the replay after a 401: the token refresh comes first, then the hook, then the POST."""
    await client.tables.find_one(client.connection, "incident", "ORDERBYnumber", FIELDS)  # token in memory
    await client.control.post("/__sim/tokens/expire", json={})  # the instance will refuse it: 401
    await client.control.post("/__sim/stats/reset")
    seen: list[tuple[int, int]] = []

    async def before_post() -> None:
        stats = await client.stats()
        seen.append((stats.get("POST /oauth_token.do", 0), stats.get("POST /api/now/table/incident", 0)))

    record = await client.tables.create(
        client.connection, "incident", {"correlation_id": "hooked"}, before_post=before_post
    )
    assert record["correlation_id"] == "hooked"
    assert seen == [(0, 0), (1, 1)]  # before the refused POST; after the refresh, before the replay


async def test_a_failing_before_post_sends_nothing(client: Client) -> None:
    async def lost_the_lease() -> None:
        raise RuntimeError("taken over")

    await client.control.post("/__sim/stats/reset")
    with pytest.raises(RuntimeError):
        await client.tables.create(
            client.connection, "incident", {"correlation_id": "x"}, before_post=lost_the_lease
        )
    assert "POST /api/now/table/incident" not in await client.stats()
