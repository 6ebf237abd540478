"""The local host, exercised as a client and a queue producer see it: real HTTP, real Azurite."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from localdev.azurite import AzuriteEndpoints
from localdev.host import HostConfig, LocalHost
from shared.identity import encode_principal
from shared.settings import get_settings
from tests.e2e import sample_app

TENANT = "11111111-1111-1111-1111-111111111111"
USER = "22222222-2222-2222-2222-222222222222"
QUEUE = "sample-work"
CONFIG = HostConfig(
    {
        "extensions": {
            "http": {"routePrefix": "api"},
            "queues": {"maxDequeueCount": 5, "visibilityTimeout": "00:00:00", "batchSize": 8},
        }
    }
)


@pytest.fixture
async def host(
    app_env: pytest.MonkeyPatch, azurite: AzuriteEndpoints
) -> AsyncIterator[tuple[LocalHost, httpx.AsyncClient]]:
    app_env.setenv("SAMPLE_TICK_SCHEDULE", "0 0 0 1 1 *")  # once a year: only the admin API fires it
    app_env.setenv("SAMPLE_QUEUE", QUEUE)
    app_env.setenv("SampleStorage", azurite.connection_string)
    sample_app.TIMER_RUNS.clear()
    sample_app.QUEUE_DELIVERIES.clear()
    local_host = LocalHost(sample_app.app, CONFIG, max_polling_interval_s=0.2)
    url = await local_host.start(port=0)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield local_host, client
    await local_host.stop()


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_http_trigger_with_route_params_query_and_body(
    host: tuple[LocalHost, httpx.AsyncClient],
) -> None:
    _, client = host
    response = await client.post("/api/things/books/42?lang=en", content=b"hello")
    assert response.status_code == 200
    assert response.headers["X-Echo"] == "yes"
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "method": "POST",
        "route": {"category": "books", "id": "42"},
        "query": {"lang": "en"},
        "body": "hello",
    }


async def test_literal_route_wins_and_unknown_routes_and_methods_are_json_errors(
    host: tuple[LocalHost, httpx.AsyncClient],
) -> None:
    _, client = host
    summary = await client.get("/api/things/summary")
    assert (summary.status_code, summary.text) == (200, "summary")
    missing = await client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await client.delete("/api/things/books/42")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "GET, POST"
    outside_prefix = await client.get("/things/books/42")
    assert outside_prefix.status_code == 404


async def test_timer_fired_through_the_admin_api(host: tuple[LocalHost, httpx.AsyncClient]) -> None:
    local_host, client = host
    response = await client.post("/admin/functions/tick", json={"input": ""})
    assert response.status_code == 202
    invocation = response.headers["x-local-invocation-id"]
    await eventually(lambda: local_host.invocations.get(invocation) == "succeeded")
    assert sample_app.TIMER_RUNS == [False]
    status = await client.get(f"/admin/invocations/{invocation}")
    assert status.json() == {"status": "succeeded"}
    unknown = await client.post("/admin/functions/nope")
    assert unknown.status_code == 404
    http_function = await client.post("/admin/functions/echo")
    assert http_function.status_code == 400


async def test_timer_fires_on_its_schedule(app_env: pytest.MonkeyPatch, azurite: AzuriteEndpoints) -> None:
    app_env.setenv("SAMPLE_TICK_SCHEDULE", "* * * * * *")  # every second
    app_env.setenv("SAMPLE_QUEUE", QUEUE)
    app_env.setenv("SampleStorage", azurite.connection_string)
    sample_app.TIMER_RUNS.clear()
    local_host = LocalHost(sample_app.app, CONFIG, max_polling_interval_s=0.2)
    await local_host.start(port=0)
    try:
        await eventually(lambda: len(sample_app.TIMER_RUNS) >= 2, within=10)
    finally:
        await local_host.stop()


async def test_queue_message_is_processed_once(
    host: tuple[LocalHost, httpx.AsyncClient], azurite: AzuriteEndpoints
) -> None:
    async with QueueClient.from_connection_string(
        azurite.connection_string, QUEUE, message_encode_policy=TextBase64EncodePolicy()
    ) as queue:
        await eventually(lambda: _queue_exists(queue))
        await queue.send_message("hello queue")
        await eventually(lambda: ("hello queue", 1) in sample_app.QUEUE_DELIVERIES)
        await eventually(lambda: _is_empty(queue))
    assert sample_app.QUEUE_DELIVERIES == [("hello queue", 1)]


async def test_failing_message_goes_to_poison_after_five_dequeues(
    host: tuple[LocalHost, httpx.AsyncClient], azurite: AzuriteEndpoints
) -> None:
    async with (
        QueueClient.from_connection_string(
            azurite.connection_string, QUEUE, message_encode_policy=TextBase64EncodePolicy()
        ) as queue,
        QueueClient.from_connection_string(azurite.connection_string, f"{QUEUE}-poison") as poison,
    ):
        await eventually(lambda: _queue_exists(queue))
        await queue.send_message("fail please")
        await eventually(lambda: _count(poison, 1), within=30)
        attempts = [count for body, count in sample_app.QUEUE_DELIVERIES if body == "fail please"]
        assert attempts == [1, 2, 3, 4, 5]
        [poisoned] = [m async for m in poison.receive_messages()]
        assert base64.b64decode(poisoned.content).decode() == "fail please"
        assert await _is_empty(queue)


async def test_message_that_is_not_base64_goes_straight_to_poison(
    host: tuple[LocalHost, httpx.AsyncClient], azurite: AzuriteEndpoints
) -> None:
    async with (
        QueueClient.from_connection_string(azurite.connection_string, QUEUE) as queue,
        QueueClient.from_connection_string(azurite.connection_string, f"{QUEUE}-poison") as poison,
    ):
        await eventually(lambda: _queue_exists(queue))
        await queue.send_message("plain text, not base64!")
        await eventually(lambda: _count(poison, 1), within=10)
    assert sample_app.QUEUE_DELIVERIES == []


async def test_queue_trigger_can_be_run_through_the_admin_api(
    host: tuple[LocalHost, httpx.AsyncClient],
) -> None:
    _, client = host
    response = await client.post("/admin/functions/work", json={"input": "direct"})
    assert response.status_code == 202
    await eventually(lambda: ("direct", 1) in sample_app.QUEUE_DELIVERIES)


def principal(*roles: str) -> dict[str, str]:
    return {"X-MS-CLIENT-PRINCIPAL": encode_principal(TENANT, USER, list(roles))}


async def test_protected_endpoint_needs_a_principal_with_the_role(
    host: tuple[LocalHost, httpx.AsyncClient],
) -> None:
    _, client = host
    anonymous = await client.get("/api/admin-only")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    reader = await client.get("/api/admin-only", headers=principal("Tickets.Read"))
    assert reader.status_code == 403
    assert reader.json()["error"]["code"] == "forbidden"
    admin = await client.get("/api/admin-only", headers=principal("Connector.Admin"))
    assert admin.status_code == 200
    assert admin.json() == {"tenant": TENANT}


async def test_principal_is_ignored_without_easy_auth_or_local_dev(
    host: tuple[LocalHost, httpx.AsyncClient], app_env: pytest.MonkeyPatch
) -> None:
    _, client = host
    app_env.delenv("LOCAL_DEV")
    app_env.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    get_settings.cache_clear()
    forged = await client.get("/api/admin-only", headers=principal("Connector.Admin"))
    assert forged.status_code == 401
    app_env.setenv("WEBSITE_AUTH_ENABLED", "True")
    get_settings.cache_clear()
    trusted = await client.get("/api/admin-only", headers=principal("Connector.Admin"))
    assert trusted.status_code == 200


async def _queue_exists(queue: QueueClient) -> bool:
    try:
        await queue.get_queue_properties()
    except Exception:
        return False
    return True


async def _count(queue: QueueClient, expected: int) -> bool:
    properties = await queue.get_queue_properties()
    return bool(properties.approximate_message_count == expected)


async def _is_empty(queue: QueueClient) -> bool:
    return await _count(queue, 0)
