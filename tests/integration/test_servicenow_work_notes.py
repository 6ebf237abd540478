"""`ServiceNowTables.add_work_note` against the instance simulator: a note lands once, is sent again
only when ServiceNow certainly did not carry it out, and reads back through `sys_journal_field`.

Real httpx over loopback; the connection row and the secrets are the in-memory fakes of our own
ports (the Table Storage repositories are covered in `test_servicenow_client.py`). Waits between
attempts go through a fake clock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from localdev.servicenow import RunningSimulator, start_simulator
from shared.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from shared.journal_ports import WorkNoteWriter
from shared.models import ConnectionStatus
from shared.records import Connection
from shared.servicenow.oauth import ServiceNowOAuthClient
from shared.servicenow.table_api import ServiceNowTables
from shared.servicenow.transport import RetryPolicy, new_http_client
from shared.services.access_tokens import AccessTokens
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.secrets import InMemorySecretStore
from tests.integration.servicenow_simulator.helpers import CLIENT_ID, CLIENT_SECRET
from tests.integration.test_servicenow_client import _authorize

REDIRECT_URI = "https://connector.example/api/oauth/callback"
FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.05, max_retry_after_s=2)
PATCH_INCIDENT = "PATCH /api/now/table/incident/{sys_id}"
JOURNAL_FIELDS = ["value", "element", "name", "sys_created_by", "sys_created_on"]


@dataclass
class Instance:
    simulator: RunningSimulator
    control: httpx.AsyncClient
    connection: Connection
    tables: ServiceNowTables
    clock: FakeClock

    async def incident(self) -> str:
        record = await self.tables.create(self.connection, "incident", {"short_description": "x"})
        await self.control.post("/__sim/stats/reset")
        return str(record["sys_id"])

    async def patches(self) -> int:
        counts: dict[str, int] = (await self.control.get("/__sim/stats")).json()["requests"]
        return counts.get(PATCH_INCIDENT, 0)

    async def fault(self, **rule: object) -> None:
        rule = {"method": "PATCH", "path_prefix": "/api/now/table/incident", **rule}
        response = await self.control.post("/__sim/faults", json=rule)
        assert response.status_code == 201, response.text

    async def notes(self, sys_id: str) -> list[str]:
        query = f"element_id={sys_id}^element=work_notes^ORDERBYDESCsys_created_on"
        pages = self.tables.query(self.connection, "sys_journal_field", query, JOURNAL_FIELDS)
        return [row["value"] async for page in pages for row in page]


@pytest.fixture
async def instance() -> AsyncIterator[Instance]:
    simulator = await start_simulator()
    http = new_http_client(timeout=httpx.Timeout(2.0))
    control = httpx.AsyncClient(base_url=simulator.url, timeout=5)
    try:
        secrets, connections = InMemorySecretStore(), InMemoryConnectionRepository()
        oauth = ServiceNowOAuthClient(http, retry=FAST)
        tenant = str(uuid.uuid4())
        connection = await connections.put(
            Connection(
                tenant_id=tenant, instance=simulator.url, instance_url=simulator.url, client_id=CLIENT_ID,
                status=ConnectionStatus.CONNECTED, updated_at=datetime.now(UTC),
            )
        )  # fmt: skip
        await secrets.set_client_secret(tenant, SecretStr(CLIENT_SECRET))
        await secrets.set_tokens(tenant, await _authorize(control, oauth, simulator.url))
        tokens = AccessTokens(secrets=secrets, oauth=oauth, connections=connections)
        clock = FakeClock()
        tables = ServiceNowTables(http, tokens, retry=FAST, clock=clock)
        yield Instance(simulator, control, connection, tables, clock)
    finally:
        await control.aclose()
        await http.aclose()
        await simulator.aclose()


def _conforms(tables: ServiceNowTables) -> WorkNoteWriter:
    return tables


async def test_a_note_lands_once_and_reads_back_from_the_journal(instance: Instance) -> None:
    sys_id = await instance.incident()
    await instance.tables.add_work_note(instance.connection, "incident", sys_id, "Secure Score: done")
    assert await instance.patches() == 1
    query = f"element_id={sys_id}^element=work_notes^ORDERBYDESCsys_created_on"
    rows = [row async for page in instance.tables.query(
        instance.connection, "sys_journal_field", query, JOURNAL_FIELDS
    ) for row in page]  # fmt: skip
    assert len(rows) == 1
    assert (rows[0]["value"], rows[0]["element"], rows[0]["name"]) == (
        "Secure Score: done",
        "work_notes",
        "incident",
    )
    assert rows[0]["sys_created_by"] == "admin"  # the user who granted the connector
    record = await instance.tables.find_one(
        instance.connection, "incident", f"sys_id={sys_id}", ["work_notes"]
    )
    assert record == {"work_notes": ""}  # a journal field is not stored in the record


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "500"},
        {"kind": "503"},  # no Retry-After: may come after the work was done
        {"kind": "drop"},
        {"kind": "drop", "after_processing": True},  # the 200 we never saw
        {"kind": "timeout", "delay_seconds": 4, "after_processing": True},
    ],
)
async def test_a_note_that_may_have_landed_is_not_sent_again(
    instance: Instance, fault: dict[str, object]
) -> None:
    sys_id = await instance.incident()
    await instance.fault(**fault, count=3)
    with pytest.raises(UpstreamUnavailable) as raised:
        await instance.tables.add_work_note(instance.connection, "incident", sys_id, "once")
    assert raised.value.ambiguous is True
    assert await instance.patches() == 1
    await instance.control.delete("/__sim/faults")
    expected = ["once"] if fault.get("after_processing") else []
    assert await instance.notes(sys_id) == expected


@pytest.mark.parametrize(
    "fault", [{"kind": "429", "retry_after": 1}, {"kind": "503", "retry_after": 1}], ids=["429", "503"]
)
async def test_a_note_refused_before_processing_is_sent_again(
    instance: Instance, fault: dict[str, object]
) -> None:
    sys_id = await instance.incident()
    await instance.fault(**fault, count=2)
    await instance.tables.add_work_note(instance.connection, "incident", sys_id, "after the wait")
    assert await instance.patches() == 3
    assert instance.clock.slept == [1, 1]  # Retry-After honoured, through the clock
    assert await instance.notes(sys_id) == ["after the wait"]


async def test_a_note_refused_on_every_attempt_is_unavailable_but_not_ambiguous(instance: Instance) -> None:
    sys_id = await instance.incident()
    await instance.fault(kind="429", retry_after=1, count=10)
    with pytest.raises(UpstreamUnavailable) as raised:
        await instance.tables.add_work_note(instance.connection, "incident", sys_id, "never")
    assert raised.value.ambiguous is False
    assert await instance.patches() == FAST.attempts
    await instance.control.delete("/__sim/faults")
    assert await instance.notes(sys_id) == []


async def test_a_long_retry_after_is_handed_to_the_caller(instance: Instance) -> None:
    sys_id = await instance.incident()
    await instance.fault(kind="429", retry_after=600)
    with pytest.raises(UpstreamUnavailable) as raised:
        await instance.tables.add_work_note(instance.connection, "incident", sys_id, "later")
    assert (raised.value.ambiguous, raised.value.hinted, raised.value.retry_after) == (False, True, 600)
    assert await instance.patches() == 1


async def test_a_note_that_never_left_is_not_ambiguous(instance: Instance) -> None:
    sys_id = await instance.incident()  # the access token is now in memory
    closed = await start_simulator()
    url = closed.url
    await closed.aclose()  # nothing listens on its port any more
    moved = instance.connection.model_copy(update={"instance_url": url})
    with pytest.raises(UpstreamUnavailable) as raised:
        await instance.tables.add_work_note(moved, "incident", sys_id, "nowhere")
    assert raised.value.ambiguous is False
    assert len(instance.clock.slept) == FAST.attempts - 1  # sent again after each connect error


async def test_an_expired_token_is_refreshed_and_the_note_lands_once(instance: Instance) -> None:
    sys_id = await instance.incident()
    await instance.control.post("/__sim/tokens/expire", json={})
    await instance.tables.add_work_note(instance.connection, "incident", sys_id, "after a refresh")
    assert await instance.patches() == 2  # the refused one (401: not processed) and the replay
    assert await instance.notes(sys_id) == ["after a refresh"]


async def test_an_unknown_record_is_not_found(instance: Instance) -> None:
    with pytest.raises(NotFound):
        await instance.tables.add_work_note(instance.connection, "incident", "0" * 32, "to nobody")


async def test_a_refused_note_carries_servicenows_message(instance: Instance) -> None:
    sys_id = await instance.incident()
    await instance.fault(kind="403")
    with pytest.raises(UpstreamRejected) as raised:
        await instance.tables.add_work_note(instance.connection, "incident", sys_id, "denied")
    assert "Operation Failed" in raised.value.message
    assert await instance.patches() == 1
    with pytest.raises(UpstreamRejected) as invalid:
        await instance.tables.add_work_note(instance.connection, "no_such_table", sys_id, "x")
    assert "Invalid table no_such_table" in invalid.value.message


async def test_notes_hidden_by_the_journal_acl_read_back_as_none(instance: Instance) -> None:
    sys_id = await instance.incident()
    await instance.control.post("/__sim/acl/sys_journal_field", json={"readable": False})
    await instance.tables.add_work_note(instance.connection, "incident", sys_id, "written, not readable")
    assert await instance.notes(sys_id) == []  # 200 {"result": []}, not an error
    await instance.control.post("/__sim/acl/sys_journal_field", json={"readable": True})
    assert await instance.notes(sys_id) == ["written, not readable"]
