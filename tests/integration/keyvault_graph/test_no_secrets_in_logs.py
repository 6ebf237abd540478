"""No secret value reaches a log line, at any level, in any of the Key Vault and Graph flows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from localdev.entra import EntraHandle
from localdev.keyvault import KeyVaultHandle
from shared import observability
from shared.errors import AppError
from shared.graph import GraphClient
from shared.records import TokenSet
from shared.settings import Settings
from shared.stores.secrets import KeyVaultSecretStore
from tests.conftest import GRAPH_CLIENT_SECRET

pytestmark = pytest.mark.integration

TENANT = "5e5e5e5e-1234-4321-abcd-000011112222"
LOGGERS = (
    "",
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "msal",
    "httpx",
    "httpcore",
    "urllib3",
    "aiohttp",
    "shared",
)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    observability.install()
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


async def test_no_secret_value_in_any_log_record(
    debug_logs: pytest.LogCaptureFixture,
    secret_store: KeyVaultSecretStore,
    vault: KeyVaultHandle,
    graph: GraphClient,
    entra: EntraHandle,
    control: httpx.AsyncClient,
    make_settings: Callable[..., Settings],
) -> None:
    client_secret = "snow-client-secret-LOGTEST-91f3"
    now = datetime.now(UTC)
    tokens = TokenSet(
        access_token=SecretStr("snow-access-LOGTEST-7d2a9c"),
        refresh_token=SecretStr("snow-refresh-LOGTEST-0b8e44"),
        access_token_expires_at=now + timedelta(minutes=30),
        refresh_token_expires_at=now + timedelta(days=100),
    )

    # Key Vault: write, throttled read, cached read, delete and purge.
    await secret_store.set_client_secret(TENANT, SecretStr(client_secret))
    await secret_store.set_tokens(TENANT, tokens)
    await control.post(f"{vault.url}/__kv/faults", json={"status": 429, "count": 1, "retryAfter": 0.01})
    assert await secret_store.get_tokens(TENANT) == tokens
    assert await secret_store.get_client_secret(TENANT) is not None
    await secret_store.delete_tenant(TENANT)

    # Graph: token, paging, a refreshed expired token, a 404, and a rejected client secret.
    await graph.list_improvement_actions(TENANT, page_size=8)
    await control.post(f"{entra.url}/__entra/expire-tokens", json={})
    await graph.get_improvement_action(TENANT, "AdminMFAV2")
    with pytest.raises(AppError):
        await graph.get_improvement_action(TENANT, "NoSuchControl")
    wrong = GraphClient.from_settings(
        make_settings(
            GRAPH_BASE_URL=entra.url,
            ENTRA_AUTHORITY_HOST=entra.url,
            GRAPH_CLIENT_SECRET="wrong-secret-LOGTEST-55",
        )
    )
    try:
        with pytest.raises(AppError):
            await wrong.get_improvement_action(TENANT, "AdminMFAV2")
    finally:
        await wrong.aclose()

    graph_tokens = list(entra.state.tokens)
    assert len(graph_tokens) >= 2  # the flows above really did get (and refresh) Graph tokens
    secrets = [
        client_secret,
        tokens.access_token.get_secret_value(),
        tokens.refresh_token.get_secret_value(),
        GRAPH_CLIENT_SECRET,
        "wrong-secret-LOGTEST-55",
        *graph_tokens,
    ]
    records = debug_logs.records
    assert len(records) > 20  # DEBUG logging of the SDKs was really on
    assert any(r.name.startswith("azure.core.pipeline.policies.http_logging_policy") for r in records)
    assert any(r.name.startswith("msal") for r in records)
    for record in records:
        rendered = " ".join(
            [record.getMessage(), record.exc_text or "", record.stack_info or "", repr(record.__dict__)]
        )
        for secret in secrets:
            assert secret not in rendered, f"a secret value leaked through logger {record.name}"
    for secret in secrets:
        assert secret not in debug_logs.text
