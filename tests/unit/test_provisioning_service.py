"""ProvisioningService on in-memory fakes of its ports and the real OAuth client over MockTransport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from shared.errors import BadRequest, ConnectionNotReady
from shared.identity import Caller, Role
from shared.models import CallbackParams, ConfigureConnection, ConnectionStatus, StateNamesUpdate
from shared.servicenow.oauth import ServiceNowOAuthClient
from shared.services.provisioning import ProvisioningConfig, ProvisioningService
from shared.stores.secrets import client_secret_name, tokens_name
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository, InMemoryOAuthStateRepository
from tests.fakes.secrets import InMemorySecretStore
from tests.fakes.servicenow import FakeServiceNow

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TENANT = "0f0e0d0c-0b0a-4999-8888-777766665555"
ADMIN = Caller(TENANT, "a0a0a0a0-0000-4000-8000-000000000001", "Ada Admin", frozenset({Role.ADMIN}))
PORTAL = "https://portal.example.test/servicenow?tab=connection"
REDIRECT = "https://connector.example.test/api/oauth/callback"


@dataclass
@dataclass
class World:
    service: ProvisioningService
    connections: InMemoryConnectionRepository
    states: InMemoryOAuthStateRepository
    secrets: InMemorySecretStore
    servicenow: FakeServiceNow
    clock: FakeClock
    http: httpx.AsyncClient

    def configure_request(
        self, instance: str = "contoso", secret: str | None = "default"
    ) -> ConfigureConnection:
        chosen = self.servicenow.client_secret if secret == "default" else secret
        return ConfigureConnection(
            instance=instance,
            client_id=self.servicenow.client_id,
            client_secret=SecretStr(chosen) if chosen is not None else None,
        )

    async def consent(self, authorize_url: str) -> CallbackParams:
        """What ServiceNow sends back after Allow: a code bound to the URL's PKCE challenge."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        return CallbackParams(state=query["state"], code=self.servicenow.issue_code(query["code_challenge"]))


def make_service(
    connections: InMemoryConnectionRepository,
    states: InMemoryOAuthStateRepository,
    secrets: InMemorySecretStore,
    http: httpx.AsyncClient,
    clock: FakeClock,
    *,
    local_dev: bool = False,
) -> ProvisioningService:
    return ProvisioningService(
        connections=connections,
        states=states,
        secrets=secrets,
        oauth=ServiceNowOAuthClient(http, clock=clock),
        config=ProvisioningConfig(
            redirect_uri=REDIRECT,
            portal_url=PORTAL,
            url_template="https://{instance}.service-now.com",
            local_dev=local_dev,
        ),
        clock=clock,
    )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    servicenow, clock = FakeServiceNow(), FakeClock(START)
    connections, states, secrets = (
        InMemoryConnectionRepository(),
        InMemoryOAuthStateRepository(),
        InMemorySecretStore(),
    )
    async with httpx.AsyncClient(transport=servicenow.transport()) as http:
        service = make_service(connections, states, secrets, http, clock)
        yield World(service, connections, states, secrets, servicenow, clock, http)


def outcome(location: str) -> dict[str, str]:
    assert location.startswith("https://portal.example.test/servicenow?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


# --- configure -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["contoso", "Contoso", "contoso.service-now.com", "https://contoso.service-now.com/", " contoso "],
)
async def test_configure_normalises_the_instance_and_builds_a_pkce_authorize_url(
    world: World, typed: str
) -> None:
    result = await world.service.configure(ADMIN, world.configure_request(typed))
    assert result.status == ConnectionStatus.PENDING_AUTHORIZATION
    parts = urlsplit(result.authorize_url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "contoso.service-now.com", "/oauth_auth.do")
    assert query["response_type"] == "code"
    assert query["client_id"] == world.servicenow.client_id
    assert query["redirect_uri"] == REDIRECT
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) == 43
    saved = world.connections.rows[TENANT]
    assert (saved.instance, saved.instance_url) == ("contoso", "https://contoso.service-now.com")
    assert world.states.rows[query["state"]].tenant_id == TENANT
    assert world.states.rows[query["state"]].expires_at == START + timedelta(minutes=10)


async def test_configure_without_a_client_secret_the_first_time_is_refused_and_stores_nothing(
    world: World,
) -> None:
    with pytest.raises(BadRequest) as refused:
        await world.service.configure(ADMIN, world.configure_request(secret=None))
    assert refused.value.fields[0]["field"] == "clientSecret"
    assert world.connections.rows == {}
    assert world.states.rows == {}
    assert world.secrets.values == {}


async def test_configure_without_a_client_secret_later_keeps_the_stored_one(world: World) -> None:
    await world.service.configure(ADMIN, world.configure_request())
    result = await world.service.configure(ADMIN, world.configure_request(secret=None))
    assert world.secrets.values[client_secret_name(TENANT)] == world.servicenow.client_secret
    location = await world.service.complete(await world.consent(result.authorize_url))
    assert outcome(location) == {"tab": "connection", "servicenow": "connected"}


@pytest.mark.parametrize(
    "typed",
    [
        "https://evil.example.com",
        "evil.example.com",
        "http://contoso.service-now.com",
        "https://contoso.service-now.com.evil.example.com",
        "https://contoso.service-now.com:8443",
        "https://admin@contoso.service-now.com",
        "https://contoso.service-now.com/path",
        "https://contoso.service-now.com/?x=1",
        "http://127.0.0.1:8080",
        "http://169.254.169.254",
        "contoso..service-now.com",
        "-contoso",
    ],
)
async def test_configure_refuses_other_hosts_outside_local_dev(world: World, typed: str) -> None:
    with pytest.raises(BadRequest):
        await world.service.configure(ADMIN, world.configure_request(typed))
    assert world.connections.rows == {}
    assert world.secrets.values == {}
    assert world.servicenow.token_requests == 0


async def test_local_dev_accepts_a_plain_url_for_the_simulator(world: World) -> None:
    local = make_service(
        world.connections, world.states, world.secrets, world.http, world.clock, local_dev=True
    )
    result = await local.configure(ADMIN, world.configure_request("http://127.0.0.1:8080/"))
    assert result.authorize_url.startswith("http://127.0.0.1:8080/oauth_auth.do?")
    with pytest.raises(BadRequest):
        await local.configure(ADMIN, world.configure_request("http://127.0.0.1:8080/some/path"))


# --- the callback ----------------------------------------------------------------------------------


async def test_callback_connects_and_records_who_when_and_the_token_expiry(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request())
    world.clock.advance(minutes=2)
    location = await world.service.complete(await world.consent(result.authorize_url))
    assert outcome(location)["servicenow"] == "connected"
    view = await world.service.status(TENANT)
    assert view.status == ConnectionStatus.CONNECTED
    assert (view.connected_by, view.connected_at) == ("Ada Admin", START + timedelta(minutes=2))
    assert view.access_token_expires_at == START + timedelta(minutes=2, seconds=1799)
    assert view.refresh_token_expires_at == START + timedelta(minutes=2, days=100)
    tokens = await world.secrets.get_tokens(TENANT)
    assert tokens is not None
    assert tokens.refresh_token.get_secret_value() == world.servicenow.issued[0]["refresh_token"]


async def test_a_state_is_valid_for_ten_minutes(world: World) -> None:
    first = await world.service.configure(ADMIN, world.configure_request())
    world.clock.advance(minutes=10)
    expired = await world.service.complete(await world.consent(first.authorize_url))
    assert outcome(expired)["reason"] == "expired_state"
    assert world.servicenow.token_requests == 0

    second = await world.service.authorize(ADMIN)
    world.clock.advance(minutes=9, seconds=59)
    assert outcome(await world.service.complete(await world.consent(second.authorize_url))) == {
        "tab": "connection",
        "servicenow": "connected",
    }


async def test_a_consumed_state_is_a_replay_even_with_a_new_code(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request())
    assert (
        outcome(await world.service.complete(await world.consent(result.authorize_url)))["servicenow"]
        == "connected"
    )
    again = await world.service.complete(await world.consent(result.authorize_url))
    assert outcome(again) == {"tab": "connection", "servicenow": "error", "reason": "replay"}
    assert world.servicenow.token_requests == 1


async def test_a_state_issued_for_another_instance_is_configuration_changed(world: World) -> None:
    old = await world.service.configure(ADMIN, world.configure_request("contoso"))
    await world.service.configure(ADMIN, world.configure_request("fabrikam"))
    location = await world.service.complete(await world.consent(old.authorize_url))
    assert outcome(location)["reason"] == "configuration_changed"
    assert world.servicenow.token_requests == 0
    assert world.connections.rows[TENANT].instance == "fabrikam"
    assert world.connections.rows[TENANT].status == ConnectionStatus.PENDING_AUTHORIZATION


async def test_a_state_whose_connection_was_removed_is_configuration_changed(world: World) -> None:
    old = await world.service.configure(ADMIN, world.configure_request())
    await world.service.remove(TENANT)
    location = await world.service.complete(await world.consent(old.authorize_url))
    assert outcome(location)["reason"] == "configuration_changed"
    assert world.connections.rows == {}


async def test_only_the_latest_authorize_url_can_complete(world: World) -> None:
    first = await world.service.configure(ADMIN, world.configure_request())
    second = await world.service.authorize(ADMIN)
    assert (
        outcome(await world.service.complete(await world.consent(first.authorize_url)))["reason"]
        == "superseded"
    )
    assert world.servicenow.token_requests == 0
    assert (
        outcome(await world.service.complete(await world.consent(second.authorize_url)))["servicenow"]
        == "connected"
    )


async def test_denied_consent_records_the_error_and_keeps_the_status(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request())
    query = parse_qs(urlsplit(result.authorize_url).query)
    location = await world.service.complete(CallbackParams(state=query["state"][0], error="access_denied"))
    assert outcome(location)["reason"] == "denied"
    view = await world.service.status(TENANT)
    assert view.status == ConnectionStatus.PENDING_AUTHORIZATION
    assert view.last_error
    assert world.servicenow.token_requests == 0


async def test_a_refused_code_exchange_is_exchange_failed(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request(secret="not-the-right-secret"))
    location = await world.service.complete(await world.consent(result.authorize_url))
    assert outcome(location)["reason"] == "exchange_failed"
    view = await world.service.status(TENANT)
    assert view.status == ConnectionStatus.PENDING_AUTHORIZATION
    assert view.last_error is not None
    assert "not-the-right-secret" not in view.last_error
    assert tokens_name(TENANT) not in world.secrets.values


async def test_an_unavailable_instance_is_exchange_failed_and_not_retried(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request())
    world.servicenow.status = 503
    location = await world.service.complete(await world.consent(result.authorize_url))
    assert outcome(location)["reason"] == "exchange_failed"
    assert world.servicenow.token_requests == 1  # a code is single use: a retry could only fail


@pytest.mark.parametrize(
    "params",
    [CallbackParams(), CallbackParams(state="x" * 43, code="c"), CallbackParams(state="short", code="c")],
)
async def test_an_unknown_state_changes_nothing(world: World, params: CallbackParams) -> None:
    await world.service.configure(ADMIN, world.configure_request())
    before = dict(world.connections.rows)
    assert outcome(await world.service.complete(params))["reason"] == "unknown_state"
    assert world.connections.rows == before


# --- state names -----------------------------------------------------------------------------------


async def test_state_names_merge_rules(world: World) -> None:
    with pytest.raises(ConnectionNotReady):
        await world.service.set_state_names(
            TENANT, StateNamesUpdate.model_validate({"incident": {"6": "Fixed"}})
        )
    await world.service.configure(ADMIN, world.configure_request())

    first = await world.service.set_state_names(
        TENANT,
        StateNamesUpdate.model_validate(
            {"incident": {"6": "Fixed"}, "change_request": {"-1": "Rolling out"}}
        ),
    )
    assert first["incident"]["6"] == "Fixed"
    assert first["incident"]["1"] == "New"
    assert first["change_request"]["-1"] == "Rolling out"

    second = await world.service.set_state_names(
        TENANT, StateNamesUpdate.model_validate({"incident": {"7": "Done"}})
    )
    assert (second["incident"]["6"], second["incident"]["7"]) == ("Fixed", "Done")

    reverted = await world.service.set_state_names(
        TENANT,
        StateNamesUpdate.model_validate({"incident": {"6": None, "7": None}, "change_request": {"-1": None}}),
    )
    assert reverted["incident"]["6"] == "Resolved"
    assert world.connections.rows[TENANT].state_names == {}  # nothing custom left is stored as nothing

    with pytest.raises(BadRequest) as refused:
        await world.service.set_state_names(
            TENANT, StateNamesUpdate.model_validate({"change_request": {"6": "X"}})
        )
    assert refused.value.fields[0]["field"] == "change_request.6"
    assert (await world.service.status(TENANT)).state_names == reverted


# --- remove ----------------------------------------------------------------------------------------


async def test_remove_revokes_both_tokens_and_deletes_everything_of_the_tenant(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request())
    await world.service.complete(await world.consent(result.authorize_url))
    issued = world.servicenow.issued[0]

    await world.service.remove(TENANT)

    assert sorted(world.servicenow.revoked) == sorted([issued["refresh_token"], issued["access_token"]])
    assert world.secrets.values.keys() == {"app-oauth-state"}
    assert world.connections.rows == {}
    assert (await world.service.status(TENANT)).status == ConnectionStatus.NOT_CONFIGURED
    await world.service.remove(TENANT)  # again: nothing to do, no error


async def test_an_unexpected_failure_in_the_callback_still_redirects_to_the_portal(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request())

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug somewhere below us")  # nothing any layer maps

    async with httpx.AsyncClient(transport=httpx.MockTransport(broken)) as http:
        service = make_service(world.connections, world.states, world.secrets, http, world.clock)
        location = await service.complete(await world.consent(result.authorize_url))
    assert outcome(location) == {
        "tab": "connection",
        "servicenow": "error",
        "reason": "temporarily_unavailable",
    }
    assert (await world.service.status(TENANT)).status == ConnectionStatus.PENDING_AUTHORIZATION


async def test_a_connection_with_unreadable_tokens_can_still_be_removed(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request())
    await world.service.complete(await world.consent(result.authorize_url))
    world.secrets.values[tokens_name(TENANT)] = "{not json"

    await world.service.remove(TENANT)

    assert world.connections.rows == {}
    assert tokens_name(TENANT) not in world.secrets.values


async def test_a_state_completes_with_the_key_version_it_was_issued_with(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request())
    world.secrets.rotate_app_key("oauth-state")  # a second instance created the key at the same moment
    location = await world.service.complete(await world.consent(result.authorize_url))
    assert outcome(location)["servicenow"] == "connected"


async def test_status_warns_two_weeks_before_the_refresh_token_ends(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request())
    await world.service.complete(await world.consent(result.authorize_url))
    world.clock.advance(days=85, hours=23, minutes=59)  # 14 days and a minute left of the 100
    assert (await world.service.status(TENANT)).refresh_token_expires_soon is False
    world.clock.advance(minutes=2)
    assert (await world.service.status(TENANT)).refresh_token_expires_soon is True


async def test_state_names_merge_over_the_instances_own_labels(world: World) -> None:
    result = await world.service.configure(ADMIN, world.configure_request())
    await world.service.complete(await world.consent(result.authorize_url))
    row = world.connections.rows[TENANT]
    world.connections.rows[TENANT] = row.model_copy(
        update={"instance_state_labels": {"incident": {"2": "Work in Progress", "9": "Awaiting Vendor"}}}
    )
    names = await world.service.set_state_names(TENANT, StateNamesUpdate(incident={"9": "With the vendor"}))
    assert names["incident"]["1"] == "New"  # documented default
    assert names["incident"]["2"] == "Work in Progress"  # the instance's label
    assert names["incident"]["9"] == "With the vendor"  # the tenant's name for the instance's state
    assert (await world.service.status(TENANT)).state_names == names
    with pytest.raises(BadRequest):
        await world.service.set_state_names(TENANT, StateNamesUpdate(incident={"10": "No such state"}))
