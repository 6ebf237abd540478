"""The connector's HTTP API as end-to-end tests use it, plus the admin's browser at ServiceNow.

Each helper makes the request a portal or a browser would, asserts only what every caller needs
(the status code the happy path must have), and returns what tests assert on. Helpers that may
legitimately fail take `expect=` so a test can ask for the failure it wants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from tests.e2e.conftest import Simulator, Stack
from tests.integration.servicenow_simulator.helpers import parse_consent_form


def query_of(url: str) -> dict[str, str]:
    """The query parameters of a URL (first value of each)."""
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


@dataclass(frozen=True)
class OAuthRound:
    """One trip through ServiceNow's consent page and back to our callback.

    `callback_url` is where ServiceNow sent the browser (our redirect URI with `code` or `error`
    and `state`); `location` is where our callback then sent it (the portal); `outcome` is the
    portal URL's query (`servicenow=connected`, or `servicenow=error` and `reason`).
    """

    authorize_url: str
    state: str
    callback_url: str
    location: str

    @property
    def code(self) -> str | None:
        return query_of(self.callback_url).get("code")

    @property
    def outcome(self) -> dict[str, str]:
        return query_of(self.location)


async def configure(
    stack: Stack,
    tenant_id: str,
    simulator: Simulator,
    *,
    client_secret: str | None = "",
    instance: str | None = None,
    expect: int = 200,
) -> httpx.Response:
    """PUT /api/provisioning as the tenant's admin. `client_secret=""` sends the simulator's
    secret, `None` leaves it out (keep the stored one); `instance` defaults to the simulator URL."""
    body: dict[str, Any] = {"instance": instance or simulator.url, "clientId": simulator.client_id}
    if client_secret is not None:
        body["clientSecret"] = client_secret or simulator.client_secret
    response = await stack.client.put("/api/provisioning", json=body, headers=stack.as_admin(tenant_id))
    assert response.status_code == expect, response.text
    return response


async def authorize(stack: Stack, tenant_id: str) -> str:
    """POST /api/provisioning/authorize: a fresh authorize URL."""
    response = await stack.client.post("/api/provisioning/authorize", headers=stack.as_admin(tenant_id))
    assert response.status_code == 200, response.text
    return str(response.json()["authorizeUrl"])


async def consent(stack: Stack, authorize_url: str, *, allow: bool = True) -> str:
    """Open the authorize URL and click Allow or Deny, as the admin's browser would.

    Returns the URL ServiceNow redirects the browser to (our callback with code/error and state).
    """
    page = await stack.browser.get(authorize_url)
    assert page.status_code == 200, page.text
    form = parse_consent_form(page.text)
    action = "allow" if allow else "deny"
    assert action in form.buttons, form
    answer = await stack.browser.request(
        form.method.upper() or "GET",
        urljoin(authorize_url, form.action),
        data={**form.fields, "action": action},
    )
    assert answer.status_code == 302, answer.text
    return str(answer.headers["Location"])


async def callback(stack: Stack, callback_url: str) -> str:
    """Deliver ServiceNow's redirect to our callback; returns our redirect Location (not followed).

    Asserts what holds for every outcome: a 302 to the portal, and never a cacheable response.
    """
    assert callback_url.startswith(stack.redirect_uri), callback_url
    response = await stack.client.get(callback_url)
    assert response.status_code == 302, response.text
    location = str(response.headers["Location"])
    assert location.startswith(stack.portal_url + "?"), location
    assert response.headers["Cache-Control"] == "no-store"
    return location


async def complete(stack: Stack, authorize_url: str, *, allow: bool = True) -> OAuthRound:
    """Consent at ServiceNow, then deliver the redirect to our callback."""
    callback_url = await consent(stack, authorize_url, allow=allow)
    location = await callback(stack, callback_url)
    return OAuthRound(authorize_url, query_of(authorize_url)["state"], callback_url, location)


async def connect(stack: Stack, tenant_id: str, simulator: Simulator, *, allow: bool = True) -> OAuthRound:
    """The admin's whole journey: configure the instance, consent (Allow or Deny), come back.

    Returns the round; `round.location` is the portal redirect and `round.outcome` its query.
    """
    configured = await configure(stack, tenant_id, simulator)
    return await complete(stack, configured.json()["authorizeUrl"], allow=allow)


async def status(stack: Stack, tenant_id: str) -> dict[str, Any]:
    """GET /api/provisioning as a reader of the tenant."""
    response = await stack.client.get(
        "/api/provisioning", headers=stack.as_user(tenant_id, "Tickets.Read", name="Rita Reader")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def set_state_names(stack: Stack, tenant_id: str, names: Any, *, expect: int = 200) -> httpx.Response:
    response = await stack.client.put(
        "/api/provisioning/state-names", json=names, headers=stack.as_admin(tenant_id)
    )
    assert response.status_code == expect, response.text
    return response


async def remove(stack: Stack, tenant_id: str) -> httpx.Response:
    """DELETE /api/provisioning as the tenant's admin."""
    response = await stack.client.delete("/api/provisioning", headers=stack.as_admin(tenant_id))
    assert response.status_code == 204, response.text
    return response
