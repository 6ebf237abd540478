"""Push from ServiceNow end to end: the admin rotates and gets the script and key, the simulator
plays the Business Rule with them, and a state change shows in `GET /api/tickets/{id}` within
seconds; a lost push is repaired by the poll; replayed, forged and stale pushes are refused and
change nothing; rotation and removal void the old hook; no key or signature leaks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx
import pytest

from shared import observability
from tests.e2e import api, sync_api
from tests.e2e.conftest import Stack
from tests.e2e.push_api import calls, play_rule, rotate, state_within
from tests.e2e.sync_api import wait_synced
from tests.e2e.tickets_api import connected_tenant, create, get, ticket_body

pytestmark = pytest.mark.e2e

WITHIN_S = 5.0


def signed(key_b64: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(base64.b64decode(key_b64), stamp.encode() + b"." + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-Connector-Timestamp": stamp,
        "X-Connector-Signature": base64.b64encode(mac).decode(),
    }


async def hook(stack: Stack, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await stack.client.post(url.removeprefix(stack.url), content=body, headers=headers)


async def pushed_ticket(stack: Stack) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A connected tenant with push on, the simulator playing the rule, and one incident."""
    tenant = await connected_tenant(stack)
    rotated = await rotate(stack, tenant)
    await play_rule(stack.simulator, rotated)
    ticket = (await create(stack, tenant, ticket_body(type="incident"))).json()
    await settled_pushes(stack, tenant)
    return tenant, rotated, ticket


async def settled_pushes(stack: Stack, tenant: str) -> None:
    """Wait until the worker has handled every push the simulator made: a hint handled late reads
    the record as it is then, so a test that wants a push to be the only way news arrives waits."""
    await stack.simulator.running.state.push.drain()
    sent = sum(len(call["statuses"]) for call in await calls(stack.simulator))
    await sync_api.wait_status(
        stack, tenant, lambda status: status["push"]["pushesLast24h"] >= sent, "pushes handled"
    )


async def test_a_state_change_arrives_by_push_within_five_seconds(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    before = (await stack.client.get("/api/provisioning/push", headers=stack.as_admin(tenant))).json()
    assert (before["enabled"], before["hookUrl"], before["businessRules"]) == (False, None, [])
    rotated = await rotate(stack, tenant)
    assert rotated["hookUrl"].startswith(f"{stack.url}/api/servicenow/hooks/")
    assert tenant not in rotated["hookUrl"]
    assert [rule["table"] for rule in rotated["businessRules"]] == ["incident", "change_request"]
    await play_rule(stack.simulator, rotated)
    ticket = (await create(stack, tenant, ticket_body(type="incident"))).json()

    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="2")
    took = await state_within(stack, tenant, ticket["id"], "2", WITHIN_S)

    assert took < WITHIN_S
    assert all(call["statuses"] == [202] for call in await calls(stack.simulator))
    status = await api.status(stack, tenant)
    assert status["lastSyncAt"] is None  # no poll ran: the push did it
    assert status["push"]["enabled"] is True
    assert status["push"]["pushesLast24h"] >= 1
    assert status["push"]["lastPushAt"] is not None


async def test_a_dropped_push_is_repaired_by_the_next_poll(stack: Stack) -> None:
    tenant, rotated, ticket = await pushed_ticket(stack)
    await play_rule(stack.simulator, rotated, drop=1)
    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="3")
    await asyncio.sleep(3.0)  # longer than a push takes
    assert (await get(stack, tenant, f"/{ticket['id']}"))["state"] != "3"
    assert [call["fate"] for call in await calls(stack.simulator)][-1] == "dropped"

    await sync_api.sync_now(stack, tenant)
    await wait_synced(stack, tenant, None)
    assert (await get(stack, tenant, f"/{ticket['id']}"))["state"] == "3"


async def test_duplicated_and_reordered_pushes_leave_the_newest_state(stack: Stack) -> None:
    tenant, rotated, ticket = await pushed_ticket(stack)
    await play_rule(stack.simulator, rotated, duplicate=2, reorder=1)
    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="2")
    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="6")
    await state_within(stack, tenant, ticket["id"], "6", WITHIN_S)
    await stack.simulator.running.state.push.drain()
    await asyncio.sleep(2.5)  # the late one's worker round
    assert (await get(stack, tenant, f"/{ticket['id']}"))["state"] == "6"


async def test_replayed_forged_and_unknown_pushes_are_refused_alike(stack: Stack) -> None:
    tenant, rotated, ticket = await pushed_ticket(stack)
    await stack.simulator.control("DELETE", "push")
    record = await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="7")
    body = json.dumps(
        {
            "table": "incident",
            "sys_id": ticket["sysId"],
            "sys_mod_count": int(record["sys_mod_count"]),
            "sys_updated_on": record["sys_updated_on"],
        },
        separators=(",", ":"),
    ).encode()
    url = rotated["hookUrl"]
    other_key = base64.b64encode(b"k" * 32).decode()
    refusals = [
        await hook(stack, url, body, signed(rotated["key"], body, int(time.time()) - 600)),  # replayed
        await hook(stack, url, body, signed(other_key, body)),  # forged
        await hook(stack, url, body, {**signed(rotated["key"], body), "X-Connector-Signature": ""}),
        await hook(stack, url, body + b" ", signed(rotated["key"], body)),  # body changed
        await hook(stack, url.rsplit("/", 1)[0] + "/" + "A" * 43, body, signed(rotated["key"], body)),
    ]
    assert [r.status_code for r in refusals] == [401] * 5
    assert len({json.dumps({**r.json()["error"], "requestId": ""}) for r in refusals}) == 1
    await asyncio.sleep(2.5)
    assert (await get(stack, tenant, f"/{ticket['id']}"))["state"] != "7"

    headers = signed(rotated["key"], body)
    accepted = await hook(stack, url, body, headers)
    assert accepted.status_code == 202, accepted.text
    await state_within(stack, tenant, ticket["id"], "7", WITHIN_S)
    replayed = await hook(stack, url, body, headers)  # captured and sent again, inside the window
    assert replayed.status_code == 401
    assert replayed.json()["error"]["message"] == refusals[0].json()["error"]["message"]


async def test_an_authenticated_bad_body_is_400(stack: Stack) -> None:
    _, rotated, _ = await pushed_ticket(stack)
    body = b'[{"table":"sys_user"}]'
    bad = await hook(stack, rotated["hookUrl"], body, signed(rotated["key"], body))
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "validation_error"


async def test_rotation_voids_the_old_hook_and_the_new_one_works(stack: Stack) -> None:
    tenant, first, ticket = await pushed_ticket(stack)
    second = await rotate(stack, tenant)
    assert second["hookUrl"] != first["hookUrl"]
    body = (
        b'{"table":"incident","sys_id":"'
        + ticket["sysId"].encode()
        + b'","sys_mod_count":1,"sys_updated_on":"2030-01-01 00:00:00"}'
    )
    old = await hook(stack, first["hookUrl"], body, signed(first["key"], body))
    old_url_new_key = await hook(stack, first["hookUrl"], body, signed(second["key"], body))
    new_url_old_key = await hook(stack, second["hookUrl"], body, signed(first["key"], body))
    assert [old.status_code, old_url_new_key.status_code, new_url_old_key.status_code] == [401] * 3

    await play_rule(stack.simulator, second)
    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="2")
    await state_within(stack, tenant, ticket["id"], "2", WITHIN_S)


async def test_removal_deletes_the_key_and_the_mapping(stack: Stack) -> None:
    tenant, rotated, _ = await pushed_ticket(stack)
    hook_id = rotated["hookUrl"].rsplit("/", 1)[1]
    assert f"snow-{tenant}-push-key" in stack.vault_names(tenant)
    assert await stack.rows("pushhooks", hook_id) != []
    assert await stack.rows("pushtenants", tenant) != []

    response = await api.remove(stack, tenant)
    assert response.status_code == 204
    assert stack.vault_value(f"snow-{tenant}-push-key") is None
    assert await stack.rows("pushhooks", hook_id) == []
    assert await stack.rows("pushtenants", tenant) == []
    body = b"{}"
    assert (await hook(stack, rotated["hookUrl"], body, signed(rotated["key"], body))).status_code == 401


@pytest.mark.parametrize("redaction", ["on", "off"])
async def test_no_key_or_signature_in_logs_rows_or_other_answers(
    stack: Stack, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, redaction: str
) -> None:
    """Redaction off too: it is the second line of defence, not the reason nothing leaks."""
    observability.install()
    if redaction == "off":
        monkeypatch.setattr(observability, "redact", lambda text: text)
    caplog.set_level(logging.DEBUG)
    tenant, rotated, ticket = await pushed_ticket(stack)
    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="2")
    await state_within(stack, tenant, ticket["id"], "2", WITHIN_S)
    body = b"[]"
    forged = await hook(
        stack,
        rotated["hookUrl"],
        body,
        {**signed(rotated["key"], body), "X-Connector-Signature": "Zm9yZ2Vk" * 6},
    )
    signatures = [c["headers"]["X-Connector-Signature"] for c in await calls(stack.simulator)]
    secrets = [rotated["key"], base64.b64decode(rotated["key"]).hex(), *signatures, "Zm9yZ2Vk" * 6]

    answers = [
        (await stack.client.get("/api/provisioning/push", headers=stack.as_admin(tenant))).text,
        (await stack.client.get("/api/provisioning", headers=stack.as_admin(tenant))).text,
        forged.text,
    ]
    rows = json.dumps(await stack.all_rows(), default=str)
    logs = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    for secret in secrets:
        assert secret not in rows
        assert secret not in logs
        assert all(secret not in answer for answer in answers)
