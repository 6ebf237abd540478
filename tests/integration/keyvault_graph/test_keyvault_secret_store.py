"""The real azure-keyvault-secrets client, through KeyVaultSecretStore, against the Key Vault stand-in."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from localdev.keyvault import KeyVaultHandle
from shared.errors import UpstreamUnavailable
from shared.records import TokenSet
from shared.settings import Settings
from shared.stores.secrets import KeyVaultSecretStore

pytestmark = pytest.mark.integration

TENANT = "3f2e1d0c-aaaa-bbbb-cccc-0123456789ab"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_tokens(suffix: str = "1") -> TokenSet:
    return TokenSet(
        access_token=SecretStr(f"snow-access-token-{suffix}-abcdefgh"),
        refresh_token=SecretStr(f"snow-refresh-token-{suffix}-ijklmnop"),
        access_token_expires_at=NOW + timedelta(minutes=30),
        refresh_token_expires_at=NOW + timedelta(days=100),
    )


async def kv_counts(control: httpx.AsyncClient, vault: KeyVaultHandle) -> dict[str, int]:
    response = await control.get(f"{vault.url}/__kv/requests")
    return dict(response.json()["counts"])


async def test_round_trip_through_a_second_store_instance(
    secret_store: KeyVaultSecretStore, vault: KeyVaultHandle, make_settings: Callable[..., Settings]
) -> None:
    tokens = make_tokens()
    await secret_store.set_client_secret(TENANT, SecretStr("snow-client-secret-value-1"))
    await secret_store.set_tokens(TENANT, tokens)

    # A second instance has an empty cache, so this proves the values went through Key Vault.
    other = KeyVaultSecretStore.from_settings(make_settings(KEY_VAULT_URL=vault.url))
    try:
        secret = await other.get_client_secret(TENANT)
        assert secret is not None
        assert secret.get_secret_value() == "snow-client-secret-value-1"
        assert await other.get_tokens(TENANT) == tokens
    finally:
        await other.aclose()

    names = sorted(vault.state.secrets)
    assert names == [f"snow-{TENANT}-client-secret", f"snow-{TENANT}-tokens"]
    assert vault.state.secrets[f"snow-{TENANT}-tokens"][-1].content_type == "application/json"


async def test_missing_secrets_read_as_none(secret_store: KeyVaultSecretStore) -> None:
    assert await secret_store.get_client_secret(TENANT) is None
    assert await secret_store.get_tokens(TENANT) is None


async def test_second_read_is_served_from_cache_until_a_write(
    secret_store: KeyVaultSecretStore, vault: KeyVaultHandle, control: httpx.AsyncClient
) -> None:
    await secret_store.set_tokens(TENANT, make_tokens("1"))

    first = await secret_store.get_tokens(TENANT)
    second = await secret_store.get_tokens(TENANT)
    assert first == second == make_tokens("1")
    assert (await kv_counts(control, vault))["get_secret"] == 1

    await secret_store.set_tokens(TENANT, make_tokens("2"))
    assert await secret_store.get_tokens(TENANT) == make_tokens("2")
    assert (await kv_counts(control, vault))["get_secret"] == 2

    await secret_store.get_tokens(TENANT, fresh=True)
    assert (await kv_counts(control, vault))["get_secret"] == 3


async def test_delete_tenant_soft_deletes_then_purges(
    secret_store: KeyVaultSecretStore, vault: KeyVaultHandle, control: httpx.AsyncClient
) -> None:
    await secret_store.set_client_secret(TENANT, SecretStr("snow-client-secret-value-2"))
    await secret_store.set_tokens(TENANT, make_tokens())
    assert await secret_store.get_tokens(TENANT) is not None  # now cached

    await secret_store.delete_tenant(TENANT)

    assert await secret_store.get_tokens(TENANT) is None  # the cache was invalidated too
    assert await secret_store.get_client_secret(TENANT) is None
    state = (await control.get(f"{vault.url}/__kv/state")).json()
    assert state == {"secrets": [], "deleted": []}  # gone, and not left in the soft-deleted list
    counts = await kv_counts(control, vault)
    assert counts["delete_secret"] == 2
    assert counts["purge"] == 2


async def test_delete_under_purge_protection_keeps_soft_deleted_and_reconnect_recovers(
    secret_store: KeyVaultSecretStore,
    vault: KeyVaultHandle,
    control: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await control.put(f"{vault.url}/__kv/purge-protection", json={"enabled": True})
    await secret_store.set_client_secret(TENANT, SecretStr("snow-client-secret-old"))

    with caplog.at_level(logging.WARNING, logger="shared.stores.secrets"):
        await secret_store.delete_tenant(TENANT)
    assert "did not allow purging" in caplog.text
    assert sorted(vault.state.deleted) == [f"snow-{TENANT}-client-secret"]

    # Reconnecting the tenant writes the name again: Key Vault answers 409 for a soft-deleted name,
    # so the store recovers it and writes the new value as the latest version.
    await secret_store.set_client_secret(TENANT, SecretStr("snow-client-secret-new"))
    secret = await secret_store.get_client_secret(TENANT, fresh=True)
    assert secret is not None
    assert secret.get_secret_value() == "snow-client-secret-new"
    assert (await kv_counts(control, vault))["recover"] == 1


@pytest.mark.parametrize("status", [429, 503])
async def test_throttling_and_unavailability_are_retried(
    status: int, secret_store: KeyVaultSecretStore, vault: KeyVaultHandle, control: httpx.AsyncClient
) -> None:
    await secret_store.set_client_secret(TENANT, SecretStr("snow-client-secret-value-3"))
    await control.post(
        f"{vault.url}/__kv/faults",
        json={"status": status, "count": 2, "retryAfter": 0.01, "operation": "get_secret"},
    )

    secret = await secret_store.get_client_secret(TENANT)

    assert secret is not None
    assert secret.get_secret_value() == "snow-client-secret-value-3"
    assert (await kv_counts(control, vault))["get_secret"] == 3  # two faults, then the answer


async def test_exhausted_retries_become_upstream_unavailable(
    vault: KeyVaultHandle, control: httpx.AsyncClient, make_settings: Callable[..., Settings]
) -> None:
    store = KeyVaultSecretStore.from_settings(
        make_settings(KEY_VAULT_URL=vault.url), retry_total=2, retry_backoff_factor=0.01
    )
    await control.post(f"{vault.url}/__kv/faults", json={"status": 503, "count": 5, "retryAfter": 0.01})
    try:
        with pytest.raises(UpstreamUnavailable) as raised:
            await store.set_client_secret(TENANT, SecretStr("snow-client-secret-value-4"))
    finally:
        await store.aclose()
    assert raised.value.retry_after == 1  # rounded up: never tell a client to retry after 0 s
    assert "snow-client-secret-value-4" not in str(raised.value)
    assert (await kv_counts(control, vault))["set_secret"] == 3  # the first try and two retries


async def test_unreachable_vault_is_upstream_unavailable(make_settings: Callable[..., Settings]) -> None:
    store = KeyVaultSecretStore.from_settings(
        make_settings(KEY_VAULT_URL="https://127.0.0.1:9"), retry_total=1, retry_backoff_factor=0.01
    )
    try:
        with pytest.raises(UpstreamUnavailable, match="did not answer"):
            await store.get_tokens(TENANT)
    finally:
        await store.aclose()


async def test_app_key_is_created_once_and_every_version_stays_readable(
    secret_store: KeyVaultSecretStore, vault: KeyVaultHandle, make_settings: Callable[..., Settings]
) -> None:
    first = await secret_store.app_key("oauth-state")
    assert await secret_store.app_key("oauth-state") == first  # latest, from the cache
    # Another instance, racing on first use, writes a newer version of the same key.
    other = KeyVaultSecretStore.from_settings(make_settings(KEY_VAULT_URL=vault.url))
    try:
        await other._client.set_secret("app-oauth-state", "a-second-random-key-value-0123456789")
        newer = await other.app_key("oauth-state")
        assert newer.version != first.version
        # Data derived with the first version can still be checked, on either instance.
        assert await other.app_key("oauth-state", version=first.version) == first
        assert (
            await secret_store.app_key("oauth-state", version=newer.version)
        ).value.get_secret_value() == ("a-second-random-key-value-0123456789")
    finally:
        await other.aclose()
