"""The Graph adapter's write-back against the stand-in: a PATCH of a control's state and comment
lands once and reads back as the control's state; device controls are never sent; throttling is
handed to the caller after one PATCH; a missing permission names it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from localdev.entra import EntraHandle
from shared.errors import BadRequest, UpstreamError, UpstreamUnavailable
from shared.graph import GraphClient
from tests.conftest import GRAPH_CLIENT_ID

pytestmark = pytest.mark.integration

TENANT = "3c3c3c3c-1111-2222-3333-444455556666"
OTHER_TENANT = "4d4d4d4d-7777-8888-9999-aaaabbbbcccc"
VENDOR = {"provider": "SecureScore", "vendor": "Microsoft"}


async def patches(control: httpx.AsyncClient, entra: EntraHandle, **query: str) -> list[dict[str, Any]]:
    return list((await control.get(f"{entra.url}/__entra/patches", params=query)).json()["patches"])


async def counts(control: httpx.AsyncClient, entra: EntraHandle, tenant: str) -> dict[str, int]:
    answer = await control.get(f"{entra.url}/__entra/requests", params={"tenantId": tenant})
    return dict(answer.json()["counts"])


async def fault(control: httpx.AsyncClient, entra: EntraHandle, **spec: Any) -> None:
    answer = await control.post(
        f"{entra.url}/__entra/faults", json={"kind": "graph_patch", "tenantId": TENANT, **spec}
    )
    assert answer.status_code < 300


async def test_a_patch_lands_once_and_reads_back_as_the_controls_state(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    comment = "INC0010023 https://acme.service-now.com/nav_to.do?uri=incident.do?sys_id=abc"

    await graph.update_control(TENANT, "DLPEnabled", comment=comment, state="ThirdParty")

    [patch] = await patches(control, entra)
    assert (patch["tenantId"], patch["controlId"], patch["status"]) == (TENANT, "DLPEnabled", 204)
    assert patch["body"] == {"comment": comment, "state": "ThirdParty", "vendorInformation": VENDOR}
    action = await graph.get_improvement_action(TENANT, "DLPEnabled")
    assert (action.control_state, action.control_state_comment) == ("ThirdParty", comment)
    token = await graph._token(TENANT)
    raw = await control.get(
        f"{entra.url}/v1.0/security/secureScoreControlProfiles/DLPEnabled",
        headers={"Authorization": f"Bearer {token}"},
    )
    [entry] = raw.json()["controlStateUpdates"]
    assert (entry["state"], entry["comment"], entry["updatedBy"]) == ("ThirdParty", comment, GRAPH_CLIENT_ID)
    assert (await graph.get_improvement_action(OTHER_TENANT, "DLPEnabled")).control_state is None


@pytest.mark.parametrize("state", ["Default", "Ignored", "ThirdParty", "Reviewed"])
async def test_the_state_is_kept_as_given_and_the_newest_entry_wins(
    state: str, graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    before = await graph.get_improvement_action(TENANT, "exo_mailboxaudit")
    assert before.control_state == "Reviewed"  # the sample profile's own history

    await graph.update_control(TENANT, "exo_mailboxaudit", comment="INC0010099", state=state)

    after = await graph.get_improvement_action(TENANT, "exo_mailboxaudit")
    assert (after.control_state, after.control_state_comment) == (state, "INC0010099")
    assert [p["body"]["state"] for p in await patches(control, entra)] == [state]


async def test_a_portal_change_after_ours_is_the_state_read(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await graph.update_control(TENANT, "AdminMFAV2", comment="INC0010023", state="ThirdParty")
    await control.put(f"{entra.url}/__entra/control-states/{TENANT}/AdminMFAV2", json={"state": "Ignored"})

    action = await graph.get_improvement_action(TENANT, "AdminMFAV2")

    assert (action.control_state, action.control_state_comment) == ("Ignored", "INC0010023")


@pytest.mark.parametrize("control_id", ["scid_2000", "scid_2010"])
async def test_a_device_control_is_refused_before_anything_is_sent(
    control_id: str, graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    with pytest.raises(BadRequest, match="device control"):
        await graph.update_control(TENANT, control_id, comment="INC0010023", state="ThirdParty")

    assert await patches(control, entra) == []
    assert await counts(control, entra, TENANT) == {}


async def test_throttling_is_handed_to_the_caller_after_exactly_one_patch(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await fault(control, entra, status=429, retryAfter=30)

    with pytest.raises(UpstreamUnavailable) as raised:
        await graph.update_control(TENANT, "DLPEnabled", comment="INC0010023", state="ThirdParty")

    error = raised.value
    assert (error.retry_after, error.hinted, error.ambiguous) == (30, True, False)
    assert (await counts(control, entra, TENANT))["graph_patch"] == 1
    assert await patches(control, entra) == []
    assert (await graph.get_improvement_action(TENANT, "DLPEnabled")).control_state is None


@pytest.mark.parametrize("status", [429, 503])
async def test_a_short_retry_after_is_waited_for_and_the_patch_lands_once(
    status: int, graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await fault(control, entra, status=status, retryAfter=0.01)

    await graph.update_control(TENANT, "DLPEnabled", comment="INC0010023", state="Reviewed")

    assert (await counts(control, entra, TENANT))["graph_patch"] == 2
    assert [p["status"] for p in await patches(control, entra)] == [204]


async def test_a_503_without_retry_after_is_ambiguous_and_not_sent_again(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await fault(control, entra, status=503)

    with pytest.raises(UpstreamUnavailable) as raised:
        await graph.update_control(TENANT, "DLPEnabled", comment="INC0010023", state="Reviewed")

    assert raised.value.ambiguous is True
    assert (await counts(control, entra, TENANT))["graph_patch"] == 1


async def test_a_missing_permission_names_security_events_read_write(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await fault(control, entra, status=403)

    with pytest.raises(UpstreamError, match=r"SecurityEvents\.ReadWrite\.All") as raised:
        await graph.update_control(TENANT, "DLPEnabled", comment="INC0010023", state="ThirdParty")

    assert not isinstance(raised.value, UpstreamUnavailable)
    assert (await counts(control, entra, TENANT))["graph_patch"] == 1


async def test_an_expired_token_is_replaced_and_the_patch_lands_once(
    graph: GraphClient, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    await graph.control_scores(TENANT)  # msal now holds a token it believes valid for an hour
    await control.post(f"{entra.url}/__entra/expire-tokens", json={})

    await graph.update_control(TENANT, "AdminMFAV2", comment="INC0010023", state="ThirdParty")

    every = (await control.get(f"{entra.url}/__entra/requests")).json()["counts"]
    assert (every["graph_patch"], every["graph_expired_token"]) == (2, 1)  # 401, then the PATCH
    assert [p["status"] for p in await patches(control, entra)] == [204]
