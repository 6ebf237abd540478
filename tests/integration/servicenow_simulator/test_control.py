"""The control API (/__sim/), stats, reset, several instances at once, and the CLI.
Docstrings cite lines of ``cat -n /work/shared/reference/servicenow-wire-facts.md`` where relevant."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import httpx

from localdev.servicenow import RunningSimulator, start_simulator

from .helpers import bearer, connect, open_client, refresh

INCIDENT_URL = "/api/now/table/incident"


async def test_fulfiller_changes_state(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """facts L150, L175: a fulfiller's change moves state, sys_updated_on and sys_mod_count."""
    record = (await api.post(INCIDENT_URL, json={"short_description": "x"})).json()["result"]
    await client.post("/__sim/clock", json={"advance_seconds": 30})
    changed = await client.post(f"/__sim/records/incident/{record['sys_id']}", json={"state": "6"})
    assert changed.status_code == 200
    seen = (await api.get(f"{INCIDENT_URL}/{record['sys_id']}")).json()["result"]
    assert (seen["state"], seen["sys_mod_count"], seen["sys_updated_by"]) == ("6", "1", "itil")
    assert seen["sys_updated_on"] > record["sys_updated_on"]
    watermark = record["sys_updated_on"]
    since = await api.get(INCIDENT_URL, params={"sysparm_query": f"sys_updated_on>{watermark}"})
    assert [row["sys_id"] for row in since.json()["result"]] == [record["sys_id"]]
    missing = await client.post(f"/__sim/records/incident/{'0' * 32}", json={"state": "6"})
    assert missing.status_code == 404


async def test_delete_in_instance(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """facts L119: a record deleted in the instance is then 'No Record found' to the client."""
    record = (await api.post(INCIDENT_URL, json={})).json()["result"]
    assert (await client.delete(f"/__sim/records/incident/{record['sys_id']}")).status_code == 204
    assert (await api.get(f"{INCIDENT_URL}/{record['sys_id']}")).status_code == 404


async def test_bulk_seed_is_fast(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """facts L173: seeded records are real records (numbers in sequence); 1,000 in well under a second."""
    started = time.perf_counter()
    answer = await client.post(
        "/__sim/tables/incident/seed",
        json={"count": 1000, "template": {"short_description": "Seed {n}", "state": ["1", "2", "6"]}},
    )
    assert time.perf_counter() - started < 1.0
    body = answer.json()
    assert (answer.status_code, body["created"]) == (201, 1000)
    assert (body["numbers"][0], body["numbers"][-1]) == ("INC0010001", "INC0011000")
    listing = await api.get(INCIDENT_URL, params={"sysparm_query": "state=2", "sysparm_limit": "1"})
    assert listing.headers["X-Total-Count"] == "333"
    raw = (await client.get("/__sim/records/incident")).json()["result"]
    assert raw[1]["short_description"] == "Seed 2"
    assert (await client.post("/__sim/tables/nope/seed", json={"count": 1})).status_code == 404


async def test_stats_count_per_endpoint(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """Request counts keyed by METHOD + path template (table filled in, sys_id templated)."""
    await client.post("/__sim/stats/reset")
    record = (await api.post(INCIDENT_URL, json={})).json()["result"]
    await api.get(f"{INCIDENT_URL}/{record['sys_id']}")
    await api.get(f"{INCIDENT_URL}/{record['sys_id']}")
    await api.get("/api/now/v2/table/change_request")
    stats = (await client.get("/__sim/stats")).json()
    assert stats["requests"] == {
        "POST /api/now/table/incident": 1,
        "GET /api/now/table/incident/{sys_id}": 2,
        "GET /api/now/v2/table/change_request": 1,
    }
    assert stats["total"] == 4


async def test_reset(client: httpx.AsyncClient, api: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """Reset empties tables and counters (numbers restart) and forgets tokens unless keep_oauth."""
    await api.post(INCIDENT_URL, json={})
    await client.post("/__sim/faults", json={"kind": "500"})
    await client.post("/__sim/clock", json={"advance_seconds": 100})
    assert (await client.post("/__sim/reset", json={"keep_oauth": True})).status_code == 204
    assert (await client.get("/__sim/clock")).json()["offset_seconds"] == 0
    assert (await client.get("/__sim/faults")).json()["pending"] == []
    created = (await api.post(INCIDENT_URL, json={})).json()["result"]
    assert created["number"] == "INC0010001"
    assert (await client.post("/__sim/reset")).status_code == 204
    assert (await api.get(INCIDENT_URL)).status_code == 401
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await client.get("/__sim/stats")).json()["total"] == 2  # the two calls just made


async def test_two_instances_are_isolated() -> None:
    """Two tenants' instances at once: separate ports, records, counters and tokens."""
    first, second = await asyncio.gather(start_simulator(), start_simulator())
    try:
        assert first.url != second.url
        async with open_client(first.url) as one, open_client(second.url) as two:
            token_one = (await connect(one))["access_token"]
            token_two = (await connect(two))["access_token"]
            await one.post(INCIDENT_URL, json={}, headers=bearer(token_one))
            made = await two.post(INCIDENT_URL, json={}, headers=bearer(token_two))
            assert made.json()["result"]["number"] == "INC0010001"  # own counter
            assert (await two.get(INCIDENT_URL, headers=bearer(token_one))).status_code == 401
            await one.post("/__sim/faults", json={"kind": "503"})
            assert (await two.get(INCIDENT_URL, headers=bearer(token_two))).status_code == 200
            assert (await one.get(INCIDENT_URL, headers=bearer(token_one))).status_code == 503
    finally:
        await asyncio.gather(first.aclose(), second.aclose())


async def test_custom_clients(sim: RunningSimulator) -> None:
    """Clients given to start_simulator replace the default development client."""
    custom = await start_simulator(clients={"tenant-a": "secret-a"})
    try:
        async with open_client(custom.url) as client:
            page = await client.get(
                "/oauth_auth.do",
                params={
                    "response_type": "code",
                    "client_id": "dev-client-id",
                    "redirect_uri": "https://x/cb",
                    "state": "s",
                },
            )
            assert page.status_code == 400
    finally:
        await custom.aclose()


async def test_cli_serves_and_stops_on_sigint() -> None:
    """python -m localdev.servicenow prints its URL when ready and exits 0 on SIGINT."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "localdev.servicenow",
        "--port",
        "0",
        "--client",
        "cli-client:cli-secret",
        "--rate-limit",
        "50",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode().strip()
        prefix = "ServiceNow simulator listening on "
        assert line.startswith(prefix + "http://127.0.0.1:")
        async with open_client(line.removeprefix(prefix)) as client:
            page = await client.get(
                "/oauth_auth.do",
                params={
                    "response_type": "code",
                    "client_id": "cli-client",
                    "redirect_uri": "https://x/cb",
                    "state": "s",
                },
            )
            assert page.status_code == 200
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_frozen_clock_keeps_every_change_in_one_second(
    client: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    """facts L111 (one-second resolution): a frozen clock makes 'the same second' deterministic."""
    frozen = (await client.post("/__sim/clock", json={"frozen": True})).json()
    assert frozen["frozen"] is True
    record = (await api.post(INCIDENT_URL, json={"short_description": "x"})).json()["result"]
    await asyncio.sleep(1.1)  # real time passes; simulated time does not
    changed = (await client.post(f"/__sim/records/incident/{record['sys_id']}", json={"state": "2"})).json()
    assert changed["result"]["sys_updated_on"] == record["sys_updated_on"] == frozen["now"]
    running = (await client.post("/__sim/clock", json={"frozen": False})).json()
    assert running["frozen"] is False
    assert running["now"] >= frozen["now"]  # it runs on, never back
    bad = await client.post("/__sim/clock", json={"frozen": "yes"})
    assert bad.status_code == 400
