"""What the provisioning answers tell a portal: the sync's progress on the status, and one shape
for both answers that hand out an authorize link."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from shared.identity import Caller, Role
from shared.models import (
    AuthorizeResult,
    ConfigureConnection,
    ConfigureResult,
    ConnectionStatus,
    SyncQueued,
)
from shared.records import Connection
from shared.servicenow.oauth import ServiceNowOAuthClient
from shared.services.provisioning import ProvisioningConfig, ProvisioningService
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository, InMemoryOAuthStateRepository
from tests.fakes.secrets import InMemorySecretStore
from tests.fakes.servicenow import FakeServiceNow

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TENANT = "0f0e0d0c-0b0a-4999-8888-777766665555"
ADMIN = Caller(TENANT, "a0a0a0a0-0000-4000-8000-000000000001", "Ada Admin", frozenset({Role.ADMIN}))


class World:
    def __init__(self, http: httpx.AsyncClient, servicenow: FakeServiceNow) -> None:
        self.clock = FakeClock(START)
        self.connections = InMemoryConnectionRepository()
        self.servicenow = servicenow
        self.service = ProvisioningService(
            connections=self.connections,
            states=InMemoryOAuthStateRepository(),
            secrets=InMemorySecretStore(),
            oauth=ServiceNowOAuthClient(http, clock=self.clock),
            config=ProvisioningConfig(
                redirect_uri="https://connector.example.test/api/oauth/callback",
                portal_url="https://portal.example.test/servicenow",
                url_template="https://{instance}.service-now.com",
                local_dev=False,
            ),
            clock=self.clock,
        )

    def connected(self, **fields: object) -> None:
        self.connections.rows[TENANT] = Connection.model_validate(
            {
                "tenant_id": TENANT,
                "instance": "contoso",
                "instance_url": "https://contoso.service-now.com",
                "client_id": "client",
                "status": ConnectionStatus.CONNECTED,
                "updated_at": START,
                **fields,
            }
        )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    servicenow = FakeServiceNow()
    async with httpx.AsyncClient(transport=servicenow.transport()) as http:
        yield World(http, servicenow)


# --- sync progress on the status ------------------------------------------------------------------


async def test_the_status_shows_a_running_sync_and_when_the_last_one_started(world: World) -> None:
    world.connected(
        sync_lease_until=START + timedelta(minutes=10),
        last_sync_started_at=START - timedelta(minutes=5),
    )
    view = await world.service.status(TENANT)
    assert view.sync_in_progress is True
    assert view.last_sync_started_at == START - timedelta(minutes=5)
    wire = view.model_dump(mode="json", by_alias=True)
    assert (wire["syncInProgress"], wire["lastSyncStartedAt"]) == (True, "2026-11-28T11:55:00Z")


async def test_an_expired_or_released_lease_is_no_sync_in_progress(world: World) -> None:
    world.connected(sync_lease_until=START + timedelta(minutes=1))
    world.clock.advance(minutes=1)
    assert (await world.service.status(TENANT)).sync_in_progress is False
    world.connected(sync_lease_until=None)
    view = await world.service.status(TENANT)
    assert (view.sync_in_progress, view.last_sync_started_at) == (False, None)


async def test_a_tenant_without_a_connection_has_no_sync(world: World) -> None:
    wire = (await world.service.status(TENANT)).model_dump(mode="json", by_alias=True)
    assert (wire["syncInProgress"], wire["lastSyncStartedAt"]) == (False, None)


def test_the_queued_sync_says_how_to_tell_when_it_is_done() -> None:
    wire = SyncQueued(requested_at=START).model_dump(mode="json", by_alias=True)
    assert wire["status"] == "queued"
    assert wire["requestedAt"] == "2026-11-28T12:00:00Z"
    assert wire["statusUrl"] == "/api/provisioning"
    for word in ("lastSyncStartedAt", "requestedAt", "syncInProgress", "lastError"):
        assert word in wire["message"]


# --- one shape for the authorize link ---------------------------------------------------------------


def test_both_authorize_link_answers_have_the_same_fields() -> None:
    def fields(model: type[ConfigureResult] | type[AuthorizeResult]) -> set[str]:
        return {info.alias or name for name, info in model.model_fields.items()}

    assert fields(ConfigureResult) == fields(AuthorizeResult) == {"status", "authorizeUrl"}


async def test_configure_and_authorize_answer_status_and_link(world: World) -> None:
    request = ConfigureConnection(
        instance="contoso",
        client_id=world.servicenow.client_id,
        client_secret=SecretStr(world.servicenow.client_secret),
    )
    configured = await world.service.configure(ADMIN, request)
    assert configured.status == ConnectionStatus.PENDING_AUTHORIZATION
    fresh = await world.service.authorize(ADMIN)
    assert fresh.status == ConnectionStatus.PENDING_AUTHORIZATION
    assert fresh.authorize_url.startswith("https://contoso.service-now.com/oauth_auth.do?")
    assert fresh.authorize_url != configured.authorize_url


async def test_authorize_on_a_connected_tenant_says_it_is_still_connected(world: World) -> None:
    world.connected(status=ConnectionStatus.REAUTHORIZATION_REQUIRED)
    assert (await world.service.authorize(ADMIN)).status == ConnectionStatus.REAUTHORIZATION_REQUIRED
    world.connected()
    assert (await world.service.authorize(ADMIN)).status == ConnectionStatus.CONNECTED
