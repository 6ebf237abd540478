"""No secret value in responses, table rows or logs, over the whole connect-and-remove journey."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging

import httpx
import pytest

from shared import observability
from shared.servicenow.oauth import code_challenge
from shared.stores.secrets import tokens_name
from tests.e2e import api
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def _verifier(app_key: str, state_id: str) -> str:
    digest = hmac.new(app_key.encode(), state_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.mark.parametrize("redaction", ["on", "off"])
async def test_no_secret_reaches_a_response_a_row_or_a_log(
    stack: Stack, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, redaction: str
) -> None:
    """Redaction on, at DEBUG (wire traces included). Redaction off, at INFO (what production logs):
    redaction is the second line of defence, not the reason nothing leaks."""
    observability.install()
    if redaction == "off":
        monkeypatch.setattr(observability, "redact", lambda text: text)
    caplog.set_level(logging.DEBUG if redaction == "on" else logging.INFO)
    responses: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        responses.append(f"{response.status_code} {dict(response.headers)} {response.text}")

    stack.client.event_hooks["response"].append(keep)
    tenant = stack.new_tenant()

    denied = await api.connect(stack, tenant, stack.simulator, allow=False)
    assert denied.outcome["reason"] == "denied"
    allowed = await api.complete(stack, await api.authorize(stack, tenant))
    assert allowed.outcome == {"servicenow": "connected"}
    replayed = await api.callback(stack, allowed.callback_url)
    assert api.query_of(replayed)["reason"] == "replay"
    await api.set_state_names(stack, tenant, {"incident": {"6": "Fixed"}})
    await api.status(stack, tenant)
    await stack.client.put("/api/provisioning", json={"instance": "x", "clientId": "bad id"},
                           headers=stack.as_admin(tenant))  # fmt: skip
    rows = await stack.all_rows()  # before remove: the connection row still exists

    # The values that must never show: what the simulator issued, Key Vault holds, and the browser carried.
    [grant] = await stack.simulator.tokens()
    stored = json.loads(stack.vault_value(tokens_name(tenant)) or "{}")
    assert stored["refresh_token"] == grant["refresh_token"]
    app_key = stack.vault_value("app-oauth-state")
    assert app_key is not None
    verifier = _verifier(app_key, allowed.state)
    assert code_challenge(verifier) == api.query_of(allowed.authorize_url)["code_challenge"]
    assert allowed.code is not None
    secrets = {
        "client secret": stack.simulator.client_secret,
        "access token": grant["access_tokens"][0]["access_token"],
        "refresh token": grant["refresh_token"],
        "authorization code": allowed.code,
        "PKCE verifier": verifier,
        "state key": app_key,
    }

    await api.remove(stack, tenant)  # revokes: the tokens go out on the wire once more
    assert (await stack.simulator.stats())["POST /oauth_revoke_token.do"] == 2

    assert any(row.get("PartitionKey") == tenant for row in rows["connections"])
    assert any(row.get("TenantId") == tenant for row in rows["oauthstates"])
    logs = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    assert "OAuth callback failed" in logs  # the failures were logged, so the check below means something
    places = {
        "responses": "\n".join(responses),
        "table rows": json.dumps(rows, default=str),
        "logs": logs,
    }
    for place, text in places.items():
        for what, value in secrets.items():
            leaked = value in text  # not `assert value not in text`: pytest would print the secret
            assert not leaked, f"the {what} appears in the {place}"
