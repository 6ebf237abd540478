"""The real msal + httpx Graph adapter against the Entra + Graph stand-in."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from localdev.entra import EntraHandle
from shared.errors import NotFound, UpstreamError, UpstreamUnavailable
from shared.graph import GraphClient
from shared.settings import Settings

pytestmark = pytest.mark.integration

TENANT = "9a8b7c6d-1111-2222-3333-444455556666"
OTHER_TENANT = "0f0e0d0c-7777-8888-9999-aaaabbbbcccc"


async def entra_counts(control: httpx.AsyncClient, entra: EntraHandle) -> dict[str, int]:
    return dict((await control.get(f"{entra.url}/__entra/requests")).json()["counts"])


async def test_get_maps_graph_fields_to_our_model(graph: GraphClient) -> None:
    action = await graph.get_improvement_action(TENANT, "scid_2000")

    assert action.id == "scid_2000"
    assert action.title == "Turn on Microsoft Defender Antivirus"
    assert action.control_category == "Devices"  # Graph says "Device"
    assert action.max_score == 9.0
    assert action.rank == 13
    assert action.tier == "Core"
    assert action.threats == ("Malware", "Ransomware")
    assert action.action_url is not None
    assert action.action_url.startswith("https://security.microsoft.com/")
    assert action.remediation is not None
    assert action.deprecated is False
    assert action.model_dump(by_alias=True)["controlCategory"] == "Devices"


@pytest.mark.parametrize("page_size", [None, 5])
async def test_list_follows_next_links_across_pages(
    page_size: int | None, graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    actions = await graph.list_improvement_actions(TENANT, page_size=page_size)

    assert [a.id for a in actions] == [a["id"] for a in entra.state.actions]
    assert {a.control_category for a in actions} == {"Devices", "Data", "Apps", "Identity", "Infrastructure"}
    expected_pages = 5 if page_size == 5 else 3  # 21 actions: pages of 5, or of 10 (the default)
    assert (await entra_counts(control, entra))["graph_list"] == expected_pages


async def test_unknown_action_is_a_clear_not_found(graph: GraphClient) -> None:
    with pytest.raises(NotFound) as raised:
        await graph.get_improvement_action(TENANT, "NoSuchControl")
    assert raised.value.message == "Improvement action NoSuchControl was not found in Microsoft Secure Score."


async def test_token_is_cached_across_calls_and_tenants_get_their_own(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await graph.get_improvement_action(TENANT, "AdminMFAV2")
    await graph.get_improvement_action(TENANT, "DLPEnabled")
    assert (await entra_counts(control, entra))["token"] == 1

    await graph.get_improvement_action(OTHER_TENANT, "AdminMFAV2")
    counts = await entra_counts(control, entra)
    assert counts["token"] == 2
    assert sorted({t.tenant_id for t in entra.state.tokens.values()}) == sorted([TENANT, OTHER_TENANT])


async def test_expired_graph_token_is_refreshed_once(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await graph.get_improvement_action(TENANT, "AdminMFAV2")
    await control.post(f"{entra.url}/__entra/expire-tokens", json={})

    # msal still holds the token and believes it valid for an hour; Graph says it expired.
    action = await graph.get_improvement_action(TENANT, "AdminMFAV2")

    assert action.id == "AdminMFAV2"
    counts = await entra_counts(control, entra)
    assert counts["graph_expired_token"] == 1
    assert counts["token"] == 2


@pytest.mark.parametrize("status", [429, 503])
async def test_throttling_is_retried_honouring_retry_after(
    status: int, graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await control.post(f"{entra.url}/__entra/faults", json={"status": status, "count": 2, "retryAfter": 0.01})

    action = await graph.get_improvement_action(TENANT, "mdo_safeattachments")

    assert action.control_category == "Apps"
    assert (await entra_counts(control, entra))["graph_get"] == 3


async def test_persistent_throttling_becomes_upstream_unavailable(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    # A Retry-After longer than we are willing to wait inside a request is handed to the caller.
    await control.post(f"{entra.url}/__entra/faults", json={"status": 429, "count": 1, "retryAfter": 120})

    with pytest.raises(UpstreamUnavailable) as raised:
        await graph.get_improvement_action(TENANT, "mdo_safeattachments")
    assert raised.value.retry_after == 120


async def test_wrong_client_secret_is_a_clear_upstream_error(
    entra: EntraHandle, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        GRAPH_BASE_URL=entra.url,
        ENTRA_AUTHORITY_HOST=entra.url,
        GRAPH_CLIENT_SECRET="not-the-right-secret-123",
    )
    client = GraphClient.from_settings(settings, backoff=0.01)
    try:
        with pytest.raises(UpstreamError, match="invalid_client") as raised:
            await client.get_improvement_action(TENANT, "AdminMFAV2")
    finally:
        await client.aclose()
    assert "not-the-right-secret-123" not in str(raised.value)


async def test_invalid_action_id_is_rejected_without_calling_graph(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    with pytest.raises(Exception, match="not valid"):
        await graph.get_improvement_action(TENANT, "../../users")
    assert "graph_get" not in await entra_counts(control, entra)


def test_client_secret_is_not_in_the_repr() -> None:
    client_secret = SecretStr("graph-secret-never-printed")
    assert "graph-secret-never-printed" not in repr(client_secret)
