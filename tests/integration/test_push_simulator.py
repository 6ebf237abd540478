"""The simulator's push Business Rule: what it sends (body, headers, signature) and when, and the
misbehaviour it can be told to show (drop, duplicate, reorder)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from localdev.servicenow import RunningSimulator, start_simulator
from shared.records import CORRELATION_DISPLAY

pytestmark = pytest.mark.integration

KEY = base64.b64encode(b"s" * 32).decode()
OURS = {"correlation_display": CORRELATION_DISPLAY, "correlation_id": "9999998765432abcdef01"}


class Receiver:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        return web.json_response({"accepted": 1}, status=202)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/api/servicenow/hooks/{hook}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/api/servicenow/hooks/{'h' * 43}"
    yield receiver
    await runner.cleanup()


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    running = await start_simulator()
    yield running
    await running.aclose()


async def control(simulator: RunningSimulator, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        return await client.request(method, f"/__sim/{path}", json=body)


async def test_each_write_of_our_records_is_signed_and_sent(
    simulator: RunningSimulator, receiver: Receiver
) -> None:
    answer = await control(simulator, "POST", "push", {"url": receiver.url, "key": KEY})
    assert answer.status_code == 200
    assert "key" not in answer.json()["push"]
    record = simulator.state.records.insert("incident", OURS, user="admin")
    simulator.state.records.update("incident", record["sys_id"], {"state": "2"}, user="itil")
    simulator.state.records.update("incident", record["sys_id"], {"state": "2"}, user="itil")  # no change
    simulator.state.records.insert("incident", {"short_description": "not ours"}, user="admin")
    await simulator.state.push.drain()

    assert len(receiver.calls) == 2
    headers, body = receiver.calls[1]
    assert json.loads(body) == {
        "table": "incident",
        "sys_id": record["sys_id"],
        "sys_mod_count": 1,
        "sys_updated_on": record["sys_updated_on"],
    }
    assert body == json.dumps(json.loads(body), separators=(",", ":")).encode()
    stamp = headers["X-Connector-Timestamp"]
    mac = hmac.new(b"s" * 32, stamp.encode() + b"." + body, hashlib.sha256).digest()
    assert headers["X-Connector-Signature"] == base64.b64encode(mac).decode()
    assert headers["Content-Type"] == "application/json"
    listed = (await control(simulator, "GET", "push")).json()["calls"]
    assert [call["statuses"] for call in listed] == [[202], [202]]


async def test_it_drops_duplicates_and_reorders_when_told(
    simulator: RunningSimulator, receiver: Receiver
) -> None:
    await control(
        simulator, "POST", "push", {"url": receiver.url, "key": KEY, "drop": 1, "duplicate": 1, "reorder": 1}
    )
    record = simulator.state.records.insert("incident", OURS, user="admin")  # dropped
    for state in ("2", "3", "6"):  # 2: duplicated and held; 3: sent, then 2's; 6: sent
        simulator.state.records.update("incident", record["sys_id"], {"state": state}, user="itil")
        await simulator.state.push.drain()
    counts = [json.loads(body)["sys_mod_count"] for _, body in receiver.calls]
    assert counts == [2, 1, 1, 3]
    fates = [call["fate"] for call in (await control(simulator, "GET", "push")).json()["calls"]]
    assert fates == ["dropped", "sent", "sent", "sent"]


async def test_bad_settings_are_400_and_delete_stops_it(
    simulator: RunningSimulator, receiver: Receiver
) -> None:
    assert (await control(simulator, "POST", "push", {"url": "ftp://x", "key": KEY})).status_code == 400
    assert (await control(simulator, "POST", "push", {"url": receiver.url, "key": "%%"})).status_code == 400
    assert (
        await control(simulator, "POST", "push", {"url": receiver.url, "key": KEY, "drop": -1})
    ).status_code == 400
    await control(simulator, "POST", "push", {"url": receiver.url, "key": KEY})
    assert (await control(simulator, "DELETE", "push")).status_code == 204
    simulator.state.records.insert("incident", OURS, user="admin")
    await simulator.state.push.drain()
    assert receiver.calls == []
