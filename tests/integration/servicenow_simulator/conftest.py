"""Each test gets a fresh simulated instance on its own loopback port, and an httpx client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from localdev.servicenow import RunningSimulator, start_simulator

from .helpers import bearer, connect, open_client


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    simulator = await start_simulator()
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(sim.url) as http:
        yield http


@pytest.fixture
async def tokens(client: httpx.AsyncClient) -> dict[str, Any]:
    return await connect(client)


@pytest.fixture
async def api(sim: RunningSimulator, tokens: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    """A client already holding a valid access token, as the connector would after consent."""
    async with open_client(sim.url, headers=bearer(tokens["access_token"])) as http:
        yield http
