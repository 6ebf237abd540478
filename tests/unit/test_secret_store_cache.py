"""The secret store's read cache and formats, with the Key Vault SDK client stubbed (no I/O)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from azure.core.exceptions import ResourceNotFoundError
from pydantic import SecretStr

from shared.errors import BadRequest, UpstreamError
from shared.observability import redact
from shared.ports import SecretStore
from shared.records import TokenSet
from shared.stores.secrets import (
    KeyVaultSecretStore,
    client_secret_name,
    tokens_from_json,
    tokens_name,
    tokens_to_json,
)
from shared.stores.ttl_cache import TtlCache
from tests.fakes.secrets import InMemorySecretStore

TENANT = "11111111-2222-3333-4444-555555555555"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKENS = TokenSet(
    access_token=SecretStr("unit-access-token-123456"),
    refresh_token=SecretStr("unit-refresh-token-654321"),
    access_token_expires_at=NOW + timedelta(minutes=30),
    refresh_token_expires_at=NOW + timedelta(days=100),
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StubSecretClient:
    """Stands in for azure.keyvault.secrets.aio.SecretClient: a dict plus a read counter."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def get_secret(self, name: str) -> Any:
        self.reads += 1
        value = self.values.get(name)
        if self.gate is not None:
            await self.gate.wait()
        if value is None:
            raise ResourceNotFoundError("not found")
        return SimpleNamespace(value=value)

    async def set_secret(self, name: str, value: str, **kwargs: Any) -> Any:
        self.values[name] = value
        return SimpleNamespace(value=value)


def make_store(ttl: float = 60.0) -> tuple[KeyVaultSecretStore, StubSecretClient, FakeClock]:
    client, clock = StubSecretClient(), FakeClock()
    return KeyVaultSecretStore(cast(Any, client), cache_ttl=ttl, clock=clock), client, clock


async def test_reads_within_the_ttl_are_served_from_memory() -> None:
    store, client, clock = make_store(ttl=60)
    client.values[tokens_name(TENANT)] = tokens_to_json(TOKENS)

    assert await store.get_tokens(TENANT) == TOKENS
    clock.now += 59
    assert await store.get_tokens(TENANT) == TOKENS
    assert client.reads == 1

    clock.now += 1
    assert await store.get_tokens(TENANT) == TOKENS
    assert client.reads == 2


async def test_a_write_invalidates_and_fresh_bypasses() -> None:
    store, client, _ = make_store()
    await store.set_client_secret(TENANT, SecretStr("first-client-secret"))
    assert (await store.get_client_secret(TENANT)) == SecretStr("first-client-secret")

    await store.set_client_secret(TENANT, SecretStr("second-client-secret"))
    assert (await store.get_client_secret(TENANT)) == SecretStr("second-client-secret")
    assert client.reads == 2

    await store.get_client_secret(TENANT, fresh=True)
    assert client.reads == 3


async def test_absence_is_not_cached() -> None:
    store, client, _ = make_store()
    assert await store.get_tokens(TENANT) is None
    client.values[tokens_name(TENANT)] = tokens_to_json(TOKENS)  # written by another instance
    assert await store.get_tokens(TENANT) == TOKENS


async def test_a_read_racing_a_write_does_not_cache_the_old_value() -> None:
    store, client, _ = make_store()
    client.values[client_secret_name(TENANT)] = "old-client-secret"
    client.gate = asyncio.Event()

    slow_read = asyncio.create_task(store.get_client_secret(TENANT))
    await asyncio.sleep(0)  # the read has fetched the old value and waits on the wire
    await store.set_client_secret(TENANT, SecretStr("new-client-secret"))
    client.gate.set()
    assert await slow_read == SecretStr("old-client-secret")

    client.gate = None
    assert await store.get_client_secret(TENANT) == SecretStr("new-client-secret")


def test_ttl_cache_evicts_the_oldest_entry_beyond_its_size() -> None:
    cache: TtlCache[str] = TtlCache(60, clock=FakeClock(), max_entries=2)
    for key in ("a", "b", "c"):
        cache.put_if_current(key, key.upper(), cache.generation(key))
    assert [cache.get(k) for k in ("a", "b", "c")] == [None, "B", "C"]


def test_names_are_valid_key_vault_names_and_tenant_ids_are_checked() -> None:
    assert client_secret_name(TENANT) == f"snow-{TENANT}-client-secret"
    assert tokens_name(TENANT) == f"snow-{TENANT}-tokens"
    with pytest.raises(BadRequest):
        tokens_name("../other")


def test_token_json_round_trips_and_registers_values_for_redaction() -> None:
    tokens = tokens_from_json(tokens_to_json(TOKENS))
    assert tokens == TOKENS
    assert "unit-access-token-123456" not in redact("token unit-access-token-123456 here")
    assert "unit-access-token-123456" not in repr(tokens)


def test_unreadable_token_json_does_not_echo_the_value() -> None:
    with pytest.raises(UpstreamError) as raised:
        tokens_from_json('{"access_token": "leaky-value-1234", "refresh_token": 5}')
    assert "leaky-value-1234" not in str(raised.value)
    assert "refresh_token" in str(raised.value)


async def test_the_fake_store_behaves_like_the_port() -> None:
    store: SecretStore = InMemorySecretStore()
    await store.set_client_secret(TENANT, SecretStr("fake-client-secret"))
    await store.set_tokens(TENANT, TOKENS)
    assert await store.get_tokens(TENANT) == TOKENS
    assert await store.get_client_secret(TENANT) == SecretStr("fake-client-secret")

    await store.delete_tenant(TENANT)
    assert await store.get_tokens(TENANT) is None
    assert await store.get_client_secret(TENANT) is None
