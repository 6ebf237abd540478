"""Fixtures for the Key Vault and Graph adapters against the local HTTPS stand-ins (started in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from localdev.entra import EntraHandle
from localdev.keyvault import KeyVaultHandle
from localdev.tls import LocalTls
from shared.graph import GraphClient
from shared.settings import Settings
from shared.stores.secrets import KeyVaultSecretStore
from tests.conftest import GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def control(local_tls: LocalTls) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTPS client for the stand-ins' control APIs, trusting the local CA."""
    async with httpx.AsyncClient(verify=local_tls.client_context(), timeout=5) as client:
        yield client


@pytest_asyncio.fixture
async def vault(keyvault_standin: KeyVaultHandle, control: httpx.AsyncClient) -> KeyVaultHandle:
    await control.post(f"{keyvault_standin.url}/__kv/reset")
    return keyvault_standin


@pytest_asyncio.fixture
async def entra(entra_standin: EntraHandle, control: httpx.AsyncClient) -> EntraHandle:
    await control.post(f"{entra_standin.url}/__entra/reset")
    return entra_standin


@pytest.fixture
def make_settings(local_tls: LocalTls) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "DataStorage": "UseDevelopmentStorage=true",
            "KEY_VAULT_URL": "https://127.0.0.1:1",
            "OAUTH_REDIRECT_URI": "http://localhost:7071/api/oauth/callback",
            "PORTAL_URL": "http://localhost:3000",
            "LOCAL_CA_BUNDLE": str(local_tls.ca_path),
            "GRAPH_CLIENT_ID": GRAPH_CLIENT_ID,
            "GRAPH_CLIENT_SECRET": GRAPH_CLIENT_SECRET,
            "LOCAL_DEV": True,
            **overrides,
        }
        # model_validate skips the environment, so a developer's shell cannot change these tests.
        return Settings.model_validate(values)

    return make


@pytest_asyncio.fixture
async def secret_store(
    vault: KeyVaultHandle, make_settings: Callable[..., Settings]
) -> AsyncIterator[KeyVaultSecretStore]:
    store = KeyVaultSecretStore.from_settings(
        make_settings(KEY_VAULT_URL=vault.url), retry_backoff_factor=0.01, retry_backoff_max=0.05
    )
    yield store
    await store.aclose()


@pytest_asyncio.fixture
async def graph(entra: EntraHandle, make_settings: Callable[..., Settings]) -> AsyncIterator[GraphClient]:
    settings = make_settings(GRAPH_BASE_URL=entra.url, ENTRA_AUTHORITY_HOST=entra.url)
    client = GraphClient.from_settings(settings, backoff=0.01)
    assert isinstance(client, GraphClient)
    yield client
    await client.aclose()
