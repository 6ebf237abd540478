"""The Graph stand-in's PATCH of a Secure Score control profile, driven with plain httpx: Graph's
validation, the `controlStateUpdates` each accepted PATCH appends to one tenant's copy, device
controls refused, the control API (a portal state change, a deprecation, the PATCHes received)
and an injected 429 aimed at PATCH only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from localdev.entra import EntraHandle
from tests.conftest import GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET

pytestmark = pytest.mark.integration

TENANT = "7a7a7a7a-1111-2222-3333-444455556666"
OTHER_TENANT = "8b8b8b8b-7777-8888-9999-aaaabbbbcccc"
PROFILES = "/v1.0/security/secureScoreControlProfiles"
VENDOR = {"provider": "SecureScore", "providerVersion": None, "subProvider": None, "vendor": "Microsoft"}


def update(**fields: Any) -> dict[str, Any]:
    return {
        "assignedTo": "",
        "comment": "INC0010023",
        "state": "ThirdParty",
        "vendorInformation": VENDOR,
        **fields,
    }


class Graph:
    """Bearer-authenticated Graph calls for one tenant, with a token fetched from the stand-in."""

    def __init__(self, http: httpx.AsyncClient, entra: EntraHandle, token: str) -> None:
        self.http, self.url, self.headers = http, entra.url, {"Authorization": f"Bearer {token}"}

    async def patch(self, control: str, body: object, prefer: str | None = None) -> httpx.Response:
        headers = {**self.headers, **({"Prefer": prefer} if prefer else {})}
        return await self.http.patch(f"{self.url}{PROFILES}/{control}", json=body, headers=headers)

    async def profile(self, control: str) -> dict[str, Any]:
        answer = await self.http.get(f"{self.url}{PROFILES}/{control}", headers=self.headers)
        assert answer.status_code == 200
        return dict(answer.json())

    async def updates(self, control: str) -> list[dict[str, Any]]:
        return list((await self.profile(control))["controlStateUpdates"])


async def graph_for(control: httpx.AsyncClient, entra: EntraHandle, tenant: str) -> Graph:
    answer = await control.post(
        f"{entra.url}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": GRAPH_CLIENT_ID,
            "client_secret": GRAPH_CLIENT_SECRET,
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    assert answer.status_code == 200
    return Graph(control, entra, answer.json()["access_token"])


async def patches(control: httpx.AsyncClient, entra: EntraHandle, **query: str) -> list[dict[str, Any]]:
    return list((await control.get(f"{entra.url}/__entra/patches", params=query)).json()["patches"])


async def test_each_accepted_patch_appends_one_update_to_that_tenants_profile(
    entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    graph = await graph_for(control, entra, TENANT)

    first = await graph.patch("DLPEnabled", update())
    second = await graph.patch("DLPEnabled", {"comment": "INC0010023 closed", "vendorInformation": VENDOR})

    assert (first.status_code, first.content, second.status_code) == (204, b"", 204)
    updates = await graph.updates("DLPEnabled")
    assert [(u["state"], u["comment"], u["assignedTo"]) for u in updates] == [
        ("ThirdParty", "INC0010023", ""),
        ("ThirdParty", "INC0010023 closed", ""),  # what a PATCH leaves out keeps its value
    ]
    assert {u["updatedBy"] for u in updates} == {GRAPH_CLIENT_ID}
    assert updates[0]["updatedDateTime"] <= updates[1]["updatedDateTime"]
    assert updates[1]["updatedDateTime"].endswith("Z")
    listed = (await control.get(f"{entra.url}{PROFILES}", headers=graph.headers)).json()["value"]
    assert next(p for p in listed if p["id"] == "DLPEnabled")["controlStateUpdates"] == updates
    other = await graph_for(control, entra, OTHER_TENANT)
    assert await other.updates("DLPEnabled") == []
    assert [(p["controlId"], p["status"]) for p in await patches(control, entra, tenantId=TENANT)] == [
        ("DLPEnabled", 204),
        ("DLPEnabled", 204),
    ]


async def test_prefer_return_representation_answers_the_updated_profile(
    entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    graph = await graph_for(control, entra, TENANT)

    answer = await graph.patch("exo_mailboxaudit", update(state="Ignored"), prefer="return=representation")

    assert answer.status_code == 200
    assert answer.headers["Preference-Applied"] == "return=representation"
    body = answer.json()
    assert (body["id"], body["azureTenantId"]) == ("exo_mailboxaudit", TENANT)
    assert [u["state"] for u in body["controlStateUpdates"]] == ["Reviewed", "Ignored"]  # latest last
    assert body["controlStateUpdates"] == await graph.updates("exo_mailboxaudit")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"comment": "x", "state": "ThirdParty"}, "vendorInformation"),
        (update(vendorInformation={"provider": "SecureScore"}), "vendorInformation"),
        (update(vendorInformation={"vendor": "Microsoft"}), "vendorInformation"),
        (update(vendorInformation={"provider": " ", "vendor": "Microsoft"}), "vendorInformation"),
        (update(vendorInformation="SecureScore"), "vendorInformation"),
        (update(vendorInformation={**VENDOR, "provider": "Defender"}), "provider"),
        (update(state="Completed"), "Possible values"),
        (update(state="thirdparty"), "Possible values"),
        (update(comment=None), "must be a string"),
        (update(assignedTo=7), "must be a string"),
        (update(maxScore=10), "read-only"),
        (update(tenantNote="x"), "does not exist"),
        ([update()], "JSON object"),
    ],
)
async def test_graph_refuses_a_bad_body_and_appends_nothing(
    body: object, says: str, entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    graph = await graph_for(control, entra, TENANT)

    answer = await graph.patch("DLPEnabled", body)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "BadRequest"
    assert says in error["message"]
    assert await graph.updates("DLPEnabled") == []
    assert [(p["body"], p["status"]) for p in await patches(control, entra)] == [(body, 400)]


async def test_a_body_that_is_not_json_is_refused(entra: EntraHandle, control: httpx.AsyncClient) -> None:
    graph = await graph_for(control, entra, TENANT)

    answer = await control.patch(
        f"{entra.url}{PROFILES}/DLPEnabled",
        content=b"state=ThirdParty",
        headers={**graph.headers, "Content-Type": "application/json"},
    )

    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "BadRequest")
    assert [p["body"] for p in await patches(control, entra)] == [None]


async def test_device_controls_and_unknown_ids_are_refused(
    entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    graph = await graph_for(control, entra, TENANT)

    device = await graph.patch("scid_2000", update())
    unknown = await graph.patch("NoSuchControl", update())

    assert device.status_code == 400
    assert "Defender Vulnerability Management" in device.json()["error"]["message"]
    assert await graph.updates("scid_2000") == []
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "ResourceNotFound")


async def test_patch_needs_a_token_as_every_graph_route(
    entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    answer = await control.patch(f"{entra.url}{PROFILES}/DLPEnabled", json=update())

    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "InvalidAuthenticationToken")
    assert await patches(control, entra) == []


async def test_a_portal_state_change_is_an_update_but_not_a_patch(
    entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    graph = await graph_for(control, entra, TENANT)
    await graph.patch("AdminMFAV2", update(comment="INC0010099", state="Default"))

    answer = await control.put(
        f"{entra.url}/__entra/control-states/{TENANT}/AdminMFAV2", json={"state": "Reviewed"}
    )

    assert answer.status_code == 200
    updates = await graph.updates("AdminMFAV2")
    assert [(u["state"], u["comment"]) for u in updates] == [
        ("Default", "INC0010099"),
        ("Reviewed", "INC0010099"),
    ]
    assert updates[-1]["updatedBy"] == "admin@contoso.onmicrosoft.com"
    assert len(await patches(control, entra, controlId="AdminMFAV2")) == 1
    counts = (await control.get(f"{entra.url}/__entra/requests", params={"tenantId": TENANT})).json()[
        "counts"
    ]
    assert counts["graph_patch"] == 1
    bad_state = await control.put(
        f"{entra.url}/__entra/control-states/{TENANT}/AdminMFAV2", json={"state": "Completed"}
    )
    unknown = await control.put(
        f"{entra.url}/__entra/control-states/{TENANT}/Nope", json={"state": "Reviewed"}
    )
    assert (bad_state.status_code, unknown.status_code) == (400, 404)


async def test_a_deprecated_control_is_flagged_and_loses_its_score_for_that_tenant_only(
    entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    graph, other = await graph_for(control, entra, TENANT), await graph_for(control, entra, OTHER_TENANT)

    answer = await control.put(
        f"{entra.url}/__entra/deprecations/{TENANT}/DLPEnabled", json={"deprecated": True}
    )

    assert answer.status_code == 200
    assert (await graph.profile("DLPEnabled"))["deprecated"] is True
    assert (await other.profile("DLPEnabled"))["deprecated"] is False

    async def scored(g: Graph) -> set[str]:
        scores = (await control.get(f"{entra.url}/v1.0/security/secureScores", headers=g.headers)).json()
        return {c["controlName"] for c in scores["value"][0]["controlScores"]}

    assert "DLPEnabled" not in await scored(graph)
    assert "DLPEnabled" in await scored(other)
    refused = await control.put(
        f"{entra.url}/__entra/deprecations/{TENANT}/DLPEnabled", json={"deprecated": "yes"}
    )
    assert refused.status_code == 400


async def test_an_injected_429_hits_patch_only_and_the_retry_is_appended_once(
    entra: EntraHandle, control: httpx.AsyncClient
) -> None:
    graph = await graph_for(control, entra, TENANT)
    await control.post(
        f"{entra.url}/__entra/faults",
        json={"status": 429, "retryAfter": 30, "kind": "graph_patch", "tenantId": TENANT},
    )
    other = await graph_for(control, entra, OTHER_TENANT)

    assert (await other.patch("DLPEnabled", update())).status_code == 204  # another tenant's PATCH
    assert (await graph.profile("DLPEnabled"))["controlStateUpdates"] == []  # a GET of the same tenant
    throttled = await graph.patch("DLPEnabled", update())
    retried = await graph.patch("DLPEnabled", update())

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "30"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert retried.status_code == 204
    assert len(await graph.updates("DLPEnabled")) == 1
    assert [p["status"] for p in await patches(control, entra, tenantId=TENANT)] == [204]
