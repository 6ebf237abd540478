"""Fixtures every layer shares: settings from the environment, and one Azurite per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from localdev.azurite import Azurite, AzuriteEndpoints
from shared.settings import get_settings

# The settings a test process runs with unless a test says otherwise. Real endpoints of the
# stand-ins a test starts are set by that test's fixtures.
BASE_ENV = {
    "KEY_VAULT_URL": "https://127.0.0.1:1",
    "OAUTH_REDIRECT_URI": "http://127.0.0.1:7071/api/oauth/callback",
    "PORTAL_URL": "http://127.0.0.1:3000/",
    "DataStorage": "UseDevelopmentStorage=true",
    "LOCAL_DEV": "true",
}


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set the base settings (tests may change more through the returned monkeypatch)."""
    for name in ("WEBSITE_AUTH_ENABLED", "LOCAL_DEV"):
        monkeypatch.delenv(name, raising=False)
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture(scope="session")
async def azurite() -> AsyncIterator[AzuriteEndpoints]:
    """Azurite in memory on free ports, started once for the whole session."""
    process = Azurite()
    endpoints = await process.start()
    yield endpoints
    await process.stop()
