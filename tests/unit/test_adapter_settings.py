"""What the adapters are built with: the local-only relaxations stay off outside LOCAL_DEV."""

from __future__ import annotations

from typing import Any

import httpx
import msal
import pytest
from pydantic import SecretStr

from shared.errors import AppError
from shared.graph import GraphClient, UnconfiguredGraph
from shared.servicenow.transport import new_http_client
from shared.settings import Settings
from shared.stores.secrets import KeyVaultSecretStore

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "DataStorage": "UseDevelopmentStorage=true",
        "KEY_VAULT_URL": "https://contoso-vault.vault.azure.net",
        "OAUTH_REDIRECT_URI": "https://app.example/api/oauth/callback",
        "PORTAL_URL": "https://portal.example/",
        "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-0000000000ab",
        "GRAPH_CLIENT_SECRET": "graph-secret-value",
    }
    return Settings.model_validate({**base, **values})


@pytest.mark.parametrize(("local_dev", "verified"), [(False, True), (True, False)])
async def test_key_vault_checks_the_challenge_resource_except_on_a_developer_machine(
    local_dev: bool, verified: bool
) -> None:
    store = KeyVaultSecretStore.from_settings(settings(LOCAL_DEV=local_dev))
    try:
        policy = store._client._client._config.authentication_policy  # the SDK's challenge policy
        assert policy._verify_challenge_resource is verified
    finally:
        await store.aclose()


@pytest.mark.parametrize("local_dev", [False, True])
async def test_msal_validates_authorities_except_on_a_developer_machine(
    local_dev: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[dict[str, Any]] = []

    class RecordingApp:  # stands in for msal's class only: we check what we ask of it
        def __init__(self, client_id: str, **options: Any) -> None:
            built.append(options)

    monkeypatch.setattr(msal, "ConfidentialClientApplication", RecordingApp)
    client = GraphClient(
        client_id="id", client_secret=SecretStr("secret-value"), local_dev=local_dev, http=httpx.AsyncClient()
    )
    try:
        await client._tokens.app(TENANT)
    finally:
        await client.aclose()
    [options] = built
    assert options["authority"] == f"https://login.microsoftonline.com/{TENANT}"
    relaxed = {key: options[key] for key in ("validate_authority", "instance_discovery") if key in options}
    assert relaxed == ({"validate_authority": False, "instance_discovery": False} if local_dev else {})


async def test_without_graph_credentials_only_enrichment_fails() -> None:
    actions = GraphClient.from_settings(settings(GRAPH_CLIENT_ID=None, GRAPH_CLIENT_SECRET=None))
    assert isinstance(actions, UnconfiguredGraph)
    with pytest.raises(AppError, match="GRAPH_CLIENT_ID"):
        await actions.get_improvement_action(TENANT, "MFARegistrationV2")


async def test_the_servicenow_client_keeps_no_session_cookies() -> None:
    cookies_sent: list[str | None] = []

    def instance(request: httpx.Request) -> httpx.Response:
        cookies_sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"Set-Cookie": "JSESSIONID=tenant-a-session; Path=/"})

    async with new_http_client(transport=httpx.MockTransport(instance)) as client:
        await client.get("https://shared.service-now.com/api/now/table/incident")
        await client.get("https://shared.service-now.com/api/now/table/incident")
    assert cookies_sent == [None, None]


def test_the_secure_score_check_takes_its_grace_from_the_settings() -> None:
    from datetime import timedelta

    from shared.bootstrap import Container

    container = Container(settings(REMEDIATION_GRACE_DAYS=2))
    assert container.remediation_check._grace == timedelta(days=2)  # what the flags are judged by
