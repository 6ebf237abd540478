"""Connecting a tenant's ServiceNow, end to end: local host, simulator, Key Vault stand-in, Azurite."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.stores.secrets import client_secret_name, tokens_name
from tests.e2e import api
from tests.e2e.conftest import Stack
from tests.fakes.clock import FakeClock

pytestmark = pytest.mark.e2e


def _grant_alive(grant: dict[str, object]) -> bool:
    tokens = grant["access_tokens"]
    assert isinstance(tokens, list)
    return not grant["revoked"] and any(token["active"] for token in tokens)


async def test_deny_then_allow_walks_the_status_from_not_configured_to_connected(stack: Stack) -> None:
    tenant = stack.new_tenant()
    assert (await api.status(stack, tenant))["status"] == "not_configured"

    denied = await api.connect(stack, tenant, stack.simulator, allow=False)
    assert denied.outcome == {"servicenow": "error", "reason": "denied"}
    pending = await api.status(stack, tenant)
    assert pending["status"] == "pending_authorization"
    assert pending["instanceUrl"] == stack.simulator.url
    assert pending["clientId"] == stack.simulator.client_id
    assert pending["lastError"]
    assert pending["connectedAt"] is None
    assert await stack.simulator.tokens() == []

    before = datetime.now(UTC)
    allowed = await api.complete(stack, await api.authorize(stack, tenant))
    assert allowed.outcome == {"servicenow": "connected"}

    connected = await api.status(stack, tenant)
    assert connected["status"] == "connected"
    assert connected["lastError"] is None
    assert connected["connectedBy"] == "Ada Admin"
    connected_at = datetime.fromisoformat(connected["connectedAt"])
    assert connected_at >= before - timedelta(seconds=1)
    access_expiry = datetime.fromisoformat(connected["accessTokenExpiresAt"])
    refresh_expiry = datetime.fromisoformat(connected["refreshTokenExpiresAt"])
    assert timedelta(minutes=25) < access_expiry - connected_at <= timedelta(minutes=31)
    assert timedelta(days=99) < refresh_expiry - connected_at <= timedelta(days=101)

    # The tokens in Key Vault are the ones the instance issued, and the grant is alive there.
    [grant] = await stack.simulator.tokens()
    stored = json.loads(stack.vault_value(tokens_name(tenant)) or "{}")
    assert stored["refresh_token"] == grant["refresh_token"]
    assert stored["access_token"] == grant["access_tokens"][0]["access_token"]
    assert _grant_alive(grant)
    assert stack.vault_value(client_secret_name(tenant)) == stack.simulator.client_secret


async def test_reauthorize_gives_a_fresh_url_that_works_and_voids_the_earlier_one(stack: Stack) -> None:
    tenant = stack.new_tenant()
    first_url = (await api.configure(stack, tenant, stack.simulator)).json()["authorizeUrl"]
    fresh_url = await api.authorize(stack, tenant)
    first, fresh = api.query_of(first_url), api.query_of(fresh_url)
    assert fresh["state"] != first["state"]
    assert fresh["code_challenge"] != first["code_challenge"]
    assert fresh["code_challenge_method"] == "S256"
    assert fresh_url.startswith(f"{stack.simulator.url}/oauth_auth.do?")

    # The admin consents in the old tab too, but only the fresh URL may complete.
    stale_callback = await api.consent(stack, first_url)
    assert (await api.complete(stack, fresh_url)).outcome == {"servicenow": "connected"}
    stale = await api.callback(stack, stale_callback)
    assert api.query_of(stale) == {"servicenow": "error", "reason": "superseded"}

    # The stale code was never exchanged: one grant, the one Key Vault holds.
    assert (await stack.simulator.stats())["POST /oauth_token.do"] == 1
    [grant] = await stack.simulator.tokens()
    stored = json.loads(stack.vault_value(tokens_name(tenant)) or "{}")
    assert stored["refresh_token"] == grant["refresh_token"]
    assert (await api.status(stack, tenant))["status"] == "connected"

    # Re-authorizing a connected tenant works the same way and replaces the grant in Key Vault.
    again = await api.complete(stack, await api.authorize(stack, tenant))
    assert again.outcome == {"servicenow": "connected"}
    grants = await stack.simulator.tokens()
    assert len(grants) == 2
    stored = json.loads(stack.vault_value(tokens_name(tenant)) or "{}")
    assert stored["refresh_token"] == grants[1]["refresh_token"]


async def test_replayed_callback_is_refused_and_changes_nothing(stack: Stack) -> None:
    tenant = stack.new_tenant()
    first = await api.connect(stack, tenant, stack.simulator)
    assert first.outcome == {"servicenow": "connected"}
    before = await api.status(stack, tenant)
    tokens_before = stack.vault_value(tokens_name(tenant))

    replayed = await api.callback(stack, first.callback_url)
    assert api.query_of(replayed) == {"servicenow": "error", "reason": "replay"}
    assert await api.status(stack, tenant) == before
    assert stack.vault_value(tokens_name(tenant)) == tokens_before
    assert (await stack.simulator.stats())["POST /oauth_token.do"] == 1


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"state": "A" * 43, "code": "made-up-code"}, id="well-formed-unknown"),
        pytest.param({"state": "not a state", "code": "made-up-code"}, id="malformed"),
        pytest.param({"code": "made-up-code"}, id="missing"),
        pytest.param({"state": "A" * 43, "code": "c" * 5000}, id="oversize-code"),
        pytest.param({}, id="nothing"),
    ],
)
async def test_forged_state_is_an_unknown_state(stack: Stack, query: dict[str, str]) -> None:
    tenant = stack.new_tenant()
    await api.configure(stack, tenant, stack.simulator)
    response = await stack.client.get("/api/oauth/callback", params=query)
    assert response.status_code == 302
    assert api.query_of(response.headers["Location"]) == {"servicenow": "error", "reason": "unknown_state"}
    assert response.headers["Location"].startswith(stack.portal_url + "?")
    assert (await api.status(stack, tenant))["status"] == "pending_authorization"
    assert "POST /oauth_token.do" not in await stack.simulator.stats()


async def test_expired_state_is_refused(stack: Stack) -> None:
    tenant = stack.new_tenant()
    authorize_url = (await api.configure(stack, tenant, stack.simulator)).json()["authorizeUrl"]
    callback_url = await api.consent(stack, authorize_url)
    state_id = api.query_of(authorize_url)["state"]
    [row] = await stack.rows("oauthstates", state_id)
    assert row["TenantId"] == tenant
    # Test data setup: the admin took longer than the state's 10 minutes to come back.
    await stack.merge_row(
        "oauthstates",
        {"PartitionKey": state_id, "RowKey": "state", "ExpiresAt": datetime.now(UTC) - timedelta(seconds=1)},
    )
    location = await api.callback(stack, callback_url)
    assert api.query_of(location) == {"servicenow": "error", "reason": "expired_state"}
    assert (await api.status(stack, tenant))["status"] == "pending_authorization"
    assert stack.vault_value(tokens_name(tenant)) is None
    assert "POST /oauth_token.do" not in await stack.simulator.stats()


async def test_expired_state_through_the_service_clock(stack: Stack) -> None:
    tenant = stack.new_tenant()
    authorize_url = (await api.configure(stack, tenant, stack.simulator)).json()["authorizeUrl"]
    callback_url = await api.consent(stack, authorize_url)
    stack.override_provisioning(clock=FakeClock(datetime.now(UTC) + timedelta(minutes=10, seconds=1)))
    location = await api.callback(stack, callback_url)
    assert api.query_of(location) == {"servicenow": "error", "reason": "expired_state"}


async def test_racing_callbacks_with_one_state_connect_exactly_once(stack: Stack) -> None:
    tenant = stack.new_tenant()
    authorize_url = (await api.configure(stack, tenant, stack.simulator)).json()["authorizeUrl"]
    callback_url = await api.consent(stack, authorize_url)
    locations = await asyncio.gather(*(api.callback(stack, callback_url) for _ in range(2)))
    outcomes = sorted(api.query_of(location).get("reason", "connected") for location in locations)
    assert outcomes == ["connected", "replay"]
    assert (await stack.simulator.stats())["POST /oauth_token.do"] == 1
    assert (await api.status(stack, tenant))["status"] == "connected"
    assert len(await stack.simulator.tokens()) == 1


async def test_two_tenants_on_two_instances_do_not_see_each_other(stack: Stack) -> None:
    other_simulator = await stack.start_simulator()
    tenant_a, tenant_b = stack.new_tenant(), stack.new_tenant()
    rounds = await asyncio.gather(
        api.connect(stack, tenant_a, stack.simulator), api.connect(stack, tenant_b, other_simulator)
    )
    assert [r.outcome for r in rounds] == [{"servicenow": "connected"}] * 2

    for tenant, simulator in ((tenant_a, stack.simulator), (tenant_b, other_simulator)):
        view = await api.status(stack, tenant)
        assert (view["status"], view["instanceUrl"], view["clientId"]) == (
            "connected",
            simulator.url,
            simulator.client_id,
        )
        [grant] = await simulator.tokens()
        assert grant["client_id"] == simulator.client_id
        stored = json.loads(stack.vault_value(tokens_name(tenant)) or "{}")
        assert stored["refresh_token"] == grant["refresh_token"]
        assert stack.vault_value(client_secret_name(tenant)) == simulator.client_secret
    assert stack.vault_value(tokens_name(tenant_a)) != stack.vault_value(tokens_name(tenant_b))

    # A tenant's state cannot complete through the other tenant's instance either: the state, not
    # the browser, decides whose connection a callback belongs to.
    [row_a] = await stack.rows("connections", tenant_a)
    [row_b] = await stack.rows("connections", tenant_b)
    assert (row_a["InstanceUrl"], row_b["InstanceUrl"]) == (stack.simulator.url, other_simulator.url)


async def test_state_names_merge_over_the_defaults_and_null_reverts(stack: Stack) -> None:
    tenant = stack.new_tenant()
    await api.set_state_names(stack, tenant, {"incident": {"6": "Fixed"}}, expect=409)
    await api.configure(stack, tenant, stack.simulator)

    answer = await api.set_state_names(
        stack, tenant, {"incident": {"6": "Fixed"}, "change_request": {"-1": "Rolling out"}}
    )
    names = answer.json()
    assert names["incident"] == {
        "1": "New", "2": "In Progress", "3": "On Hold", "6": "Fixed", "7": "Closed", "8": "Canceled",
    }  # fmt: skip
    assert names["change_request"]["-1"] == "Rolling out"
    assert names["change_request"]["-5"] == "New"
    assert (await api.status(stack, tenant))["stateNames"] == names

    merged = (await api.set_state_names(stack, tenant, {"incident": {"7": "  Done  "}})).json()
    assert (merged["incident"]["6"], merged["incident"]["7"]) == ("Fixed", "Done")
    assert merged["change_request"]["-1"] == "Rolling out"

    reverted = (await api.set_state_names(stack, tenant, {"incident": {"6": None}})).json()
    assert (reverted["incident"]["6"], reverted["incident"]["7"]) == ("Resolved", "Done")

    for bad in (
        {"incident": {"99": "Nope"}},
        {"change_request": {"6": "Not a change state"}},
        {"problem": {"1": "New"}},
        {"incident": {"1": "x" * 65}},
        {"incident": {"1": ""}},
        {"incident": {"1": 7}},
        {"incident": ["1", "New"]},
    ):
        refused = await api.set_state_names(stack, tenant, bad, expect=400)
        assert refused.json()["error"]["code"] == "validation_error"
    assert (await api.status(stack, tenant))["stateNames"] == reverted

    # The custom names survive re-configuring the same tenant.
    await api.configure(stack, tenant, stack.simulator, client_secret=None)
    assert (await api.status(stack, tenant))["stateNames"] == reverted


async def test_remove_revokes_at_servicenow_and_deletes_the_secrets(stack: Stack) -> None:
    tenant, neighbour = stack.new_tenant(), stack.new_tenant()
    await api.connect(stack, tenant, stack.simulator)
    await api.connect(stack, neighbour, stack.simulator)
    assert stack.vault_names(tenant) == {client_secret_name(tenant), tokens_name(tenant)}
    mine = json.loads(stack.vault_value(tokens_name(tenant)) or "{}")

    await api.remove(stack, tenant)

    stats = await stack.simulator.stats()
    assert stats["POST /oauth_revoke_token.do"] == 2
    grants = {grant["refresh_token"]: grant for grant in await stack.simulator.tokens()}
    assert grants[mine["refresh_token"]]["revoked"] is True
    assert not _grant_alive(grants[mine["refresh_token"]])
    assert stack.vault_names(tenant) == set()  # deleted and purged
    assert await stack.rows("connections", tenant) == []
    view = await api.status(stack, tenant)
    assert view["status"] == "not_configured"
    assert view["instanceUrl"] is None

    # The neighbour on the same instance keeps its connection and its live grant.
    assert (await api.status(stack, neighbour))["status"] == "connected"
    theirs = json.loads(stack.vault_value(tokens_name(neighbour)) or "{}")
    assert _grant_alive(grants[theirs["refresh_token"]])

    # Removing again is harmless, and the tenant can connect afresh.
    await api.remove(stack, tenant)
    assert (await api.connect(stack, tenant, stack.simulator)).outcome == {"servicenow": "connected"}


async def test_a_url_issued_before_remove_cannot_reconnect_the_tenant(stack: Stack) -> None:
    tenant = stack.new_tenant()
    old_url = (await api.configure(stack, tenant, stack.simulator)).json()["authorizeUrl"]
    await api.remove(stack, tenant)
    location = (await api.complete(stack, old_url)).location
    assert api.query_of(location) == {"servicenow": "error", "reason": "configuration_changed"}
    assert stack.vault_names(tenant) == set()
    assert (await api.status(stack, tenant))["status"] == "not_configured"


async def test_configure_without_a_secret_keeps_the_stored_one(stack: Stack) -> None:
    tenant = stack.new_tenant()
    await api.configure(stack, tenant, stack.simulator)
    again = await api.configure(stack, tenant, stack.simulator, client_secret=None)
    assert again.json()["status"] == "pending_authorization"
    assert (await api.complete(stack, again.json()["authorizeUrl"])).outcome == {"servicenow": "connected"}
    assert stack.vault_value(client_secret_name(tenant)) == stack.simulator.client_secret
    # A wrong secret is stored as given, and the code exchange then fails at ServiceNow.
    wrong = await api.configure(stack, tenant, stack.simulator, client_secret="x" * 20)
    failed = await api.complete(stack, wrong.json()["authorizeUrl"])
    assert failed.outcome == {"servicenow": "error", "reason": "exchange_failed"}
    view = await api.status(stack, tenant)
    assert view["status"] == "pending_authorization"
    assert "HTTP 401" in view["lastError"]
