"""AccessTokens: which token a connection gets, from memory, Key Vault or a refresh."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from shared.errors import ConnectionNotReady
from shared.models import ConnectionStatus
from shared.ports import ServiceNowOAuth
from shared.records import Connection, TokenSet
from shared.services.access_tokens import AccessTokens
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.oauth import FakeRefreshGrant
from tests.fakes.secrets import InMemorySecretStore

TENANT = "11111111-1111-1111-1111-111111111111"
INSTANCE = "https://contoso.service-now.com"


def token_set(
    clock: FakeClock, access: str, refresh: str, *, lives: timedelta = timedelta(minutes=30)
) -> TokenSet:
    return TokenSet(
        access_token=SecretStr(access),
        refresh_token=SecretStr(refresh),
        access_token_expires_at=clock.now() + lives,
        refresh_token_expires_at=clock.now() + timedelta(days=100),
    )


def connected(clock: FakeClock) -> Connection:
    return Connection(
        tenant_id=TENANT,
        instance="contoso",
        instance_url=INSTANCE,
        client_id="client",
        status=ConnectionStatus.CONNECTED,
        connected_at=clock.now(),
        updated_at=clock.now(),
    )


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.secrets = InMemorySecretStore()
        self.connections = InMemoryConnectionRepository()
        self.oauth = FakeRefreshGrant(self.clock)
        oauth: ServiceNowOAuth = self.oauth  # type-checked against the port
        self.tokens = AccessTokens(
            secrets=self.secrets, oauth=oauth, connections=self.connections, clock=self.clock
        )

    async def authorize(self, access: str, refresh: str) -> Connection:
        connection = connected(self.clock)
        self.connections.rows[TENANT] = connection
        await self.secrets.set_client_secret(TENANT, SecretStr("client-secret-value"))
        await self.secrets.set_tokens(TENANT, token_set(self.clock, access, refresh).for_grant(connection))
        return self.connections.rows[TENANT]


@pytest.fixture
def world() -> World:
    return World()


async def test_a_reconnected_tenant_never_gets_the_removed_grants_token(world: World) -> None:
    first = await world.authorize("first-access", "first-refresh")
    assert (await world.tokens.access_token(first)).get_secret_value() == "first-access"
    # Removed, then authorized again against the same instance and client a minute later.
    await world.secrets.delete_tenant(TENANT)
    world.clock.advance(minutes=1)
    second = await world.authorize("second-access", "second-refresh")
    assert (await world.tokens.access_token(second)).get_secret_value() == "second-access"
    assert world.oauth.refreshed == []


async def test_a_refresh_overtaken_by_a_reauthorization_does_not_overwrite_its_tokens(world: World) -> None:
    old = await world.authorize("old-access", "old-refresh")
    world.clock.advance(minutes=29)  # inside the expiry margin: the next use refreshes

    async def reauthorize() -> None:
        world.clock.advance(seconds=5)
        await world.authorize("new-access", "new-refresh")

    world.oauth.during_refresh = reauthorize
    with pytest.raises(ConnectionNotReady):
        await world.tokens.access_token(old)
    stored = await world.secrets.get_tokens(TENANT)
    assert stored is not None
    assert stored.access_token.get_secret_value() == "new-access"
    current = world.connections.rows[TENANT]
    assert (await world.tokens.access_token(current)).get_secret_value() == "new-access"


async def test_a_valid_token_in_memory_is_used_without_reading_key_vault(world: World) -> None:
    connection = await world.authorize("access", "refresh")
    await world.tokens.access_token(connection)
    world.secrets.values.clear()  # Key Vault would now have nothing to give
    assert (await world.tokens.access_token(connection)).get_secret_value() == "access"


async def test_an_expiring_token_is_refreshed_once_and_the_row_records_the_new_expiry(world: World) -> None:
    connection = await world.authorize("access", "refresh")
    world.clock.advance(minutes=29)
    token = await world.tokens.access_token(connection)
    assert token.get_secret_value() == "refreshed-1"
    assert world.oauth.refreshed == ["refresh"]
    row = world.connections.rows[TENANT]
    assert row.access_token_expires_at == world.clock.now() + timedelta(minutes=30)


async def test_a_connection_read_before_a_repointing_never_gets_the_new_grants_tokens(world: World) -> None:
    old = await world.authorize("old-access", "old-refresh")
    world.clock.advance(minutes=29)  # the old grant's token is due for a refresh
    # Meanwhile the admin pointed the tenant at another instance and authorized it there.
    repointed = old.model_copy(update={"instance_url": "https://fabrikam.service-now.com"})
    world.connections.rows[TENANT] = repointed.model_copy(update={"connected_at": world.clock.now()})
    stored = token_set(world.clock, "fabrikam-access", "fabrikam-refresh")
    await world.secrets.set_tokens(TENANT, stored.for_grant(world.connections.rows[TENANT]))
    with pytest.raises(ConnectionNotReady):
        await world.tokens.access_token(old)  # a request still holding the row it read before
    assert world.oauth.refreshed == []  # fabrikam's refresh token never went to contoso


async def test_refreshed_tokens_are_stored_for_the_grant_they_were_refreshed_for(world: World) -> None:
    connection = await world.authorize("access", "refresh")
    world.clock.advance(minutes=29)
    await world.tokens.access_token(connection)
    stored = await world.secrets.get_tokens(TENANT)
    assert stored is not None
    assert stored.belongs_to(connection)
    assert stored.authorized_at == connection.connected_at
