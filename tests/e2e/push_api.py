"""Push from ServiceNow as an admin and the simulator's Business Rule see it: rotate, play, wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.e2e.conftest import Simulator, Stack
from tests.e2e.tickets_api import get


async def rotate(stack: Stack, tenant: str) -> dict[str, Any]:
    response = await stack.client.post("/api/provisioning/push/rotate", headers=stack.as_admin(tenant))
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return dict(response.json())


async def play_rule(simulator: Simulator, rotated: dict[str, Any], **options: Any) -> None:
    await simulator.control("POST", "push", {"url": rotated["hookUrl"], "key": rotated["key"], **options})


async def calls(simulator: Simulator) -> list[dict[str, Any]]:
    return list((await simulator.control("GET", "push"))["calls"])


async def state_within(stack: Stack, tenant: str, ticket_id: str, want: str, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if (await get(stack, tenant, f"/{ticket_id}"))["state"] == want:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"state {want} not seen within {seconds} s")
