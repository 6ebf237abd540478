"""The operator's fleet view: what it shows of each connection, paging and filtering through the
port, and who may call `GET /api/operator/connections`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import azure.functions as func
import pytest
from pydantic import ValidationError

from functions.operator import operator_connections
from localdev.host import LocalContext
from shared.bootstrap import Container, set_container
from shared.errors import BadRequest
from shared.identity import Role, encode_principal
from shared.models import ConnectionStatus
from shared.operator_models import FleetQuery
from shared.push_models import PushStatus
from shared.records import Connection
from shared.services.fleet import FleetService, fleet_view
from shared.settings import Settings
from tests.fakes.clock import START, FakeClock
from tests.fakes.fleet import InMemoryConnectionFleet

OPERATOR_TENANT = "0f0f0f0f-1111-4222-8333-444444444444"
CUSTOMER = "72f988bf-86f1-41af-91ab-2d7cd011db47"
USER = "00000000-0000-0000-0000-0000000000aa"
NOW = START


def connection(
    tenant: str, status: ConnectionStatus = ConnectionStatus.CONNECTED, **fields: Any
) -> Connection:
    return Connection.model_validate(
        {
            "tenant_id": tenant,
            "instance": "contoso",
            "instance_url": "https://contoso.service-now.com",
            "client_id": "client-id-of-the-tenant",
            "status": status,
            "updated_at": NOW - timedelta(minutes=1),
            **fields,
        }
    )


def tenant(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


# --- what one connection shows ------------------------------------------------------------------


def test_a_healthy_connection_shows_its_expiries_and_last_sync() -> None:
    row = connection(
        CUSTOMER,
        connected_at=NOW - timedelta(days=3),
        access_token_expires_at=NOW + timedelta(minutes=20),
        refresh_token_expires_at=NOW + timedelta(days=97),
        last_sync_at=NOW - timedelta(minutes=4),
        last_sync_started_at=NOW - timedelta(minutes=5),
        connected_by_name="Ada Admin",
        watermarks={"incident": "2030-01-15 11:55:00"},
    )
    view = fleet_view(row, NOW)
    assert view.model_dump(by_alias=True, mode="json", exclude_none=True) == {
        "tenantId": CUSTOMER,
        "status": "connected",
        "instance": "contoso",
        "instanceUrl": "https://contoso.service-now.com",
        "connectedAt": "2030-01-12T12:00:00Z",
        "accessTokenExpiresAt": "2030-01-15T12:20:00Z",
        "refreshTokenExpiresAt": "2030-04-22T12:00:00Z",
        "refreshTokenExpiresSoon": False,
        "lastSyncAt": "2030-01-15T11:56:00Z",
        "lastSyncStartedAt": "2030-01-15T11:55:00Z",
        "lastSyncOutcome": "succeeded",
        "syncInProgress": False,
        "updatedAt": "2030-01-15T11:59:00Z",
    }


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({}, "never"),
        ({"last_sync_at": NOW - timedelta(hours=1)}, "succeeded"),
        ({"last_sync_at": NOW - timedelta(hours=1), "last_error": "Sync failed: refused"}, "failed"),
        ({"last_error": "Sync paused", "sync_not_before": NOW + timedelta(minutes=9)}, "paused"),
        ({"last_error": "Sync paused", "sync_not_before": NOW - timedelta(minutes=1)}, "failed"),
    ],
)
def test_the_last_sync_outcome_comes_from_the_row(fields: dict[str, Any], outcome: str) -> None:
    view = fleet_view(connection(CUSTOMER, **fields), NOW)
    assert view.last_sync_outcome == outcome
    assert view.sync_paused_until == (fields["sync_not_before"] if outcome == "paused" else None)


def test_a_running_sync_and_a_refresh_token_about_to_end_are_shown() -> None:
    row = connection(
        CUSTOMER,
        sync_lease_until=NOW + timedelta(seconds=30),
        refresh_token_expires_at=NOW + timedelta(days=3),
    )
    view = fleet_view(row, NOW)
    assert view.sync_in_progress is True
    assert view.refresh_token_expires_soon is True
    dead = fleet_view(row.model_copy(update={"status": ConnectionStatus.REAUTHORIZATION_REQUIRED}), NOW)
    assert dead.refresh_token_expires_soon is False  # it needs an admin anyway


def test_nothing_of_the_tenant_but_its_health_is_shown() -> None:
    row = connection(CUSTOMER, connected_by="a0a0a0a0-0000-4000-8000-000000000001", connected_by_name="Ada")
    shown = fleet_view(row, NOW).model_dump_json(by_alias=True)
    for private in ("client-id-of-the-tenant", "a0a0a0a0-0000-4000-8000-000000000001", "Ada"):
        assert private not in shown


# --- paging and filtering -----------------------------------------------------------------------


async def test_pages_pass_the_filter_and_the_token_through() -> None:
    fleet = InMemoryConnectionFleet(
        [
            connection(
                tenant(n), ConnectionStatus.CONNECTED if n % 2 else ConnectionStatus.PENDING_AUTHORIZATION
            )
            for n in range(7)
        ]
    )
    service = FleetService(fleet, clock=FakeClock())
    seen: list[str] = []
    token: str | None = None
    while True:
        page = await service.page(
            FleetQuery(status=ConnectionStatus.CONNECTED, top=2, continuation_token=token)
        )
        seen += [item.tenant_id for item in page.items]
        assert all(item.status == ConnectionStatus.CONNECTED for item in page.items)
        token = page.continuation_token
        if token is None:
            break
    assert seen == [tenant(1), tenant(3), tenant(5)]
    assert [r[:2] for r in fleet.requests] == [(ConnectionStatus.CONNECTED, 2)] * 2
    with pytest.raises(BadRequest):
        await service.page(FleetQuery(top=2, continuation_token="connected:2"))


class PushRows:
    """Push statuses by tenant; the tenants asked, in order."""

    def __init__(self, statuses: dict[str, PushStatus]) -> None:
        self.statuses = statuses
        self.asked: list[str] = []

    async def status(self, tenant_id: str) -> PushStatus:
        self.asked.append(tenant_id)
        return self.statuses.get(tenant_id, PushStatus())


async def test_each_row_shows_its_tenants_push_status_and_no_hook() -> None:
    fleet = InMemoryConnectionFleet([connection(tenant(n)) for n in range(3)])
    pushing = PushStatus(enabled=True, last_push_at=START, pushes_last_24h=7)
    push = PushRows({tenant(1): pushing})
    page = await FleetService(fleet, clock=FakeClock(), push=push).page(FleetQuery(top=10))

    assert [item.push for item in page.items] == [PushStatus(), pushing, PushStatus()]
    assert sorted(push.asked) == sorted(tenant(n) for n in range(3))
    shown = page.items[1].model_dump_json(by_alias=True)
    assert '"pushesLast24h":7' in shown
    assert "hook" not in shown.lower()
    without = await FleetService(fleet, clock=FakeClock()).page(FleetQuery(top=10))
    assert all(item.push is None for item in without.items)


@pytest.mark.parametrize(
    "params",
    [
        {"status": "broken"},
        {"top": "0"},
        {"top": "101"},
        {"top": "ten"},
        {"continuationToken": ""},
        {"other": "1"},
    ],
)
def test_bad_query_parameters_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        FleetQuery.model_validate(params)


# --- who may call -------------------------------------------------------------------------------


@pytest.fixture
def fleet(app_env: pytest.MonkeyPatch) -> Iterator[InMemoryConnectionFleet]:
    app_env.setenv("OPERATOR_TENANT_ID", OPERATOR_TENANT)
    fake = InMemoryConnectionFleet([connection(tenant(n)) for n in range(3)])
    set_container(Container(Settings(), fleet=FleetService(fake, clock=FakeClock())))
    yield fake
    set_container(None)


async def call(tenant_id: str, roles: list[str], **params: str) -> func.HttpResponse:
    request = func.HttpRequest(
        "GET",
        f"http://127.0.0.1:7071/api/operator/connections?{urlencode(params)}",
        headers={"X-MS-CLIENT-PRINCIPAL": encode_principal(tenant_id, USER, roles)},
        params=params,
        body=b"",
    )
    response: func.HttpResponse = await operator_connections(
        request, LocalContext("inv-1", "operator_connections")
    )
    return response


async def test_an_operator_of_the_operator_tenant_sees_every_connection(
    fleet: InMemoryConnectionFleet,
) -> None:
    response = await call(OPERATOR_TENANT, [Role.OPERATOR.value], top="2")
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert [item["tenantId"] for item in body["items"]] == [tenant(0), tenant(1)]
    assert body["continuationToken"]


@pytest.mark.parametrize(
    ("tenant_id", "roles"),
    [
        (CUSTOMER, ["Connector.Operator"]),  # the role, from another tenant
        (CUSTOMER, ["Connector.Admin", "Tickets.ReadWrite", "Tickets.Read"]),  # a customer's every role
        (OPERATOR_TENANT, ["Connector.Admin"]),  # the operator tenant, without the role
        (OPERATOR_TENANT, []),
    ],
)
async def test_everyone_else_is_refused(
    fleet: InMemoryConnectionFleet, tenant_id: str, roles: list[str]
) -> None:
    response = await call(tenant_id, roles)
    assert response.status_code == 403
    assert json.loads(response.get_body())["error"]["code"] == "forbidden"
    assert fleet.requests == []


async def test_without_an_operator_tenant_even_its_operators_are_refused(
    fleet: InMemoryConnectionFleet, app_env: pytest.MonkeyPatch
) -> None:
    app_env.setenv("OPERATOR_TENANT_ID", "")
    from shared.settings import get_settings

    get_settings.cache_clear()
    response = await call(OPERATOR_TENANT, [Role.OPERATOR.value])
    assert response.status_code == 403
    assert fleet.requests == []


@pytest.mark.parametrize(
    "params", [{"status": "broken"}, {"top": "500"}, {"continuationToken": "connected:2"}]
)
async def test_bad_parameters_are_400(fleet: InMemoryConnectionFleet, params: dict[str, str]) -> None:
    response = await call(OPERATOR_TENANT, [Role.OPERATOR.value], **params)
    assert response.status_code == 400
    assert json.loads(response.get_body())["error"]["code"] == "validation_error"


def test_the_operator_tenant_setting_must_be_a_tenant_id(app_env: pytest.MonkeyPatch) -> None:
    app_env.setenv("OPERATOR_TENANT_ID", "contoso.onmicrosoft.com")
    with pytest.raises(ValueError, match="OPERATOR_TENANT_ID"):
        Settings()
    app_env.setenv("OPERATOR_TENANT_ID", " " + OPERATOR_TENANT.upper() + " ")
    assert Settings().operator_tenant_id == OPERATOR_TENANT
    app_env.delenv("OPERATOR_TENANT_ID")
    assert Settings().operator_tenant_id is None
