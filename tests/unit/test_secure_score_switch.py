"""The tenant's Secure Score switch (ProvisioningService.set_secure_score) and what the status shows
of Secure Score, on in-memory ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from functions._http import validate
from shared.errors import BadRequest, ConnectionNotReady
from shared.models import ConnectionStatus
from shared.records import Connection
from shared.remediation_models import SecureScoreUpdate
from shared.servicenow.oauth import ServiceNowOAuthClient
from shared.services.provisioning import ProvisioningConfig, ProvisioningService
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository, InMemoryOAuthStateRepository
from tests.fakes.secrets import InMemorySecretStore

TENANT = "0f0e0d0c-0b0a-4999-8888-777766665555"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ON, OFF = SecureScoreUpdate(write_back=True), SecureScoreUpdate(write_back=False)
World = tuple[ProvisioningService, InMemoryConnectionRepository, FakeClock]


def refused(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the switch calls no instance: {request.url}")


@pytest.fixture
async def world() -> AsyncIterator[World]:
    connections, clock = InMemoryConnectionRepository(), FakeClock(NOW)
    async with httpx.AsyncClient(transport=httpx.MockTransport(refused)) as http:
        service = ProvisioningService(
            connections=connections,
            states=InMemoryOAuthStateRepository(),
            secrets=InMemorySecretStore(),
            oauth=ServiceNowOAuthClient(http, clock=clock),
            config=ProvisioningConfig(
                "https://app/api/oauth/callback", "https://portal", "https://{instance}", False
            ),
            clock=clock,
        )
        yield service, connections, clock


def connection(**changes: object) -> Connection:
    fields: dict[str, object] = {
        "tenant_id": TENANT,
        "instance": "contoso",
        "instance_url": "https://contoso.service-now.com",
        "client_id": "abc",
        "status": ConnectionStatus.CONNECTED,
        "updated_at": NOW - timedelta(days=1),
    }
    return Connection.model_validate({**fields, **changes})


async def test_the_switch_is_off_until_turned_on_and_back_off(world: World) -> None:
    service, connections, clock = world
    connections.rows[TENANT] = connection()
    assert (await service.status(TENANT)).secure_score.write_back is False

    clock.advance(minutes=1)
    answer = await service.set_secure_score(TENANT, ON)
    assert answer.secure_score.write_back is True
    assert answer.status == ConnectionStatus.CONNECTED
    stored = connections.rows[TENANT]
    assert (stored.secure_score_write_back, stored.updated_at) == (True, NOW + timedelta(minutes=1))
    assert (await service.status(TENANT)).secure_score.write_back is True

    assert (await service.set_secure_score(TENANT, OFF)).secure_score.write_back is False
    assert connections.rows[TENANT].secure_score_write_back is False


async def test_each_switch_changes_only_itself(world: World) -> None:
    service, connections, _ = world
    connections.rows[TENANT] = connection(secure_score_write_back=True)
    answer = await service.set_secure_score(TENANT, SecureScoreUpdate(work_notes=True))
    assert (answer.secure_score.write_back, answer.secure_score.work_notes) == (True, True)
    assert connections.rows[TENANT].remediation_work_notes is True

    answer = await service.set_secure_score(TENANT, SecureScoreUpdate(write_back=False))
    assert (answer.secure_score.write_back, answer.secure_score.work_notes) == (False, True)
    both = SecureScoreUpdate.model_validate({"writeBack": True, "workNotes": False})
    answer = await service.set_secure_score(TENANT, both)
    assert (answer.secure_score.write_back, answer.secure_score.work_notes) == (True, False)


async def test_a_lost_race_keeps_the_other_writers_change(world: World) -> None:
    service, connections, _ = world
    connections.rows[TENANT] = connection()
    connections.lose_next_write(TENANT, lambda _: {"last_error": "from the sync"})
    await service.set_secure_score(TENANT, ON)
    stored = connections.rows[TENANT]
    assert (stored.secure_score_write_back, stored.last_error) == (True, "from the sync")


async def test_a_tenant_that_never_configured_gets_connection_not_ready(world: World) -> None:
    service, connections, _ = world
    with pytest.raises(ConnectionNotReady):
        await service.set_secure_score(TENANT, ON)
    assert TENANT not in connections.rows
    off = (await service.status(TENANT)).model_dump(by_alias=True)["secureScore"]
    assert off == {"writeBack": False, "workNotes": False, "checkedAt": None, "pausedUntil": None}


async def test_the_status_shows_the_last_check_and_a_pause_only_while_it_lasts(world: World) -> None:
    service, connections, clock = world
    until = NOW + timedelta(minutes=5)
    checked = NOW - timedelta(hours=3)
    connections.rows[TENANT] = connection(remediation_checked_at=checked, graph_not_before=until)
    shown = (await service.status(TENANT)).secure_score
    assert (shown.checked_at, shown.paused_until) == (checked, until)
    clock.advance(minutes=5)
    assert (await service.status(TENANT)).secure_score.paused_until is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"writeBack": "true"},
        {"writeBack": 1},
        {"writeBack": None},
        {"writeBack": True, "x": 1},
        {"workNotes": "yes"},
        {"writeBack": None, "workNotes": None},
    ],
)
def test_only_a_json_boolean_is_a_switch(body: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        validate(SecureScoreUpdate, body)
