"""The push adapters on the real SDKs: the hook mapping and counts in Azurite's Table Storage, the
signing keys in the Key Vault stand-in."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from localdev.keyvault import KeyVaultHandle
from localdev.tls import LocalTls
from shared.settings import Settings
from shared.stores.push_hooks import TablePushHooks
from shared.stores.push_keys import KeyVaultPushKeys, push_key_name
from shared.stores.tables import TableStore

pytestmark = pytest.mark.integration

TENANT = "11111111-1111-1111-1111-111111111111"
HOOK_A, HOOK_B = "a" * 43, "b" * 43


@pytest_asyncio.fixture
async def keys(keyvault_standin: KeyVaultHandle, local_tls: LocalTls) -> AsyncIterator[KeyVaultPushKeys]:
    async with httpx.AsyncClient(verify=local_tls.client_context(), timeout=5) as control:
        await control.post(f"{keyvault_standin.url}/__kv/reset")
    settings = Settings.model_validate(
        {
            "DataStorage": "UseDevelopmentStorage=true",
            "KEY_VAULT_URL": keyvault_standin.url,
            "OAUTH_REDIRECT_URI": "http://localhost:7071/api/oauth/callback",
            "PORTAL_URL": "http://localhost:3000",
            "LOCAL_CA_BUNDLE": str(local_tls.ca_path),
            "LOCAL_DEV": True,
        }
    )
    push_keys = KeyVaultPushKeys.from_settings(settings)
    yield push_keys
    await push_keys.aclose()


async def test_a_hook_resolves_to_its_tenant_until_replaced(store: TableStore) -> None:
    hooks = TablePushHooks(store)
    assert await hooks.hook(HOOK_A) is None
    await hooks.replace_hook(TENANT, HOOK_A, "v1")
    found = await hooks.hook(HOOK_A)
    assert found is not None
    assert (found.tenant_id, found.key_version) == (TENANT, "v1")

    await hooks.replace_hook(TENANT, HOOK_B, "v2")
    assert await hooks.hook(HOOK_A) is None  # at once, in the process that rotated
    assert await TablePushHooks(store).hook(HOOK_A) is None  # and in storage
    tenant = await hooks.tenant(TENANT)
    assert tenant is not None
    assert (tenant.hook_id, tenant.key_version) == (HOOK_B, "v2")


async def test_a_lookup_is_cached_briefly_unknown_ids_too(store: TableStore) -> None:
    now = [0.0]
    hooks = TablePushHooks(store, cache_ttl=30, clock=lambda: now[0])
    other = TablePushHooks(store)
    assert await hooks.hook(HOOK_A) is None
    await other.replace_hook(TENANT, HOOK_A, "v1")
    assert await hooks.hook(HOOK_A) is None  # another process's write: seen after the TTL
    now[0] += 31
    assert await hooks.hook(HOOK_A) is not None


async def test_counts_keep_the_last_push_and_25_hours(store: TableStore) -> None:
    hooks = TablePushHooks(store)
    at = datetime(2030, 1, 15, 12, 30, tzinfo=UTC)
    await hooks.record_pushes(TENANT, 1, at)  # push never enabled: nothing to count on
    assert await hooks.tenant(TENANT) is None
    await hooks.replace_hook(TENANT, HOOK_A, "v1")
    await hooks.record_pushes(TENANT, 4, at - timedelta(hours=30))
    await hooks.record_pushes(TENANT, 2, at)
    await hooks.record_pushes(TENANT, 3, at - timedelta(minutes=1))
    tenant = await hooks.tenant(TENANT)
    assert tenant is not None
    assert tenant.hourly == {"2030011512": 5}
    assert tenant.last_push_at == at
    assert tenant.hook_id == HOOK_A


async def test_deleting_the_tenant_removes_both_rows(store: TableStore) -> None:
    hooks = TablePushHooks(store)
    await hooks.replace_hook(TENANT, HOOK_A, "v1")
    await hooks.delete_tenant(TENANT)
    assert await hooks.hook(HOOK_A) is None
    assert await hooks.tenant(TENANT) is None
    await hooks.delete_tenant(TENANT)  # again: nothing to do, no error


async def test_keys_are_32_random_bytes_by_version_and_deleted_with_the_tenant(
    keys: KeyVaultPushKeys, keyvault_standin: KeyVaultHandle
) -> None:
    v1, first = await keys.new_key(TENANT)
    v2, second = await keys.new_key(TENANT)
    assert len(first) == len(second) == 32
    assert first != second
    assert v1 != v2
    assert await keys.key(TENANT, v1) == first
    fresh = KeyVaultPushKeys(keys._store)
    assert await fresh.key(TENANT, v2) == second  # read from the vault, Base64 there
    stored = keyvault_standin.state.secrets[push_key_name(TENANT)][-1].value
    assert base64.b64decode(stored) == second
    await keys.delete_tenant(TENANT)
    assert await KeyVaultPushKeys(keys._store).key(TENANT, v2) is None
    assert await keys.key(TENANT, v2) is None
    v3, third = await keys.new_key(TENANT)  # a connection made again later
    assert await keys.key(TENANT, v3) == third


async def test_a_rotate_that_lost_a_race_leaves_no_live_hook(store: TableStore) -> None:
    hooks = TablePushHooks(store)
    await hooks.replace_hook(TENANT, HOOK_A, "v1")
    delete_hook = hooks._delete_hook

    async def then_another_rotate(hook_id: str) -> None:
        # Another process's rotate lands after our row write, before our hook row exists.
        await delete_hook(hook_id)
        hooks._delete_hook = delete_hook  # type: ignore[method-assign]
        await TablePushHooks(store).replace_hook(TENANT, HOOK_B, "v2")

    hooks._delete_hook = then_another_rotate  # type: ignore[method-assign]
    await hooks.replace_hook(TENANT, "c" * 43, "v3")
    assert await TablePushHooks(store).hook("c" * 43) is None
    assert await TablePushHooks(store).hook(HOOK_A) is None
    tenant = await hooks.tenant(TENANT)
    assert tenant is not None
    assert tenant.hook_id == HOOK_B
