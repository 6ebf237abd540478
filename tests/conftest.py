"""Fixtures every layer shares: settings from the environment, one Azurite per session, and one
Key Vault and one Entra/Graph stand-in per session (tests reset or isolate their own state)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from localdev.azurite import Azurite, AzuriteEndpoints
from localdev.entra import EntraHandle, start_entra
from localdev.keyvault import KeyVaultHandle, start_keyvault
from localdev.tls import LocalTls, ensure_local_tls
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


# The app registration the Entra stand-in knows, for every test that reads Secure Score.
GRAPH_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
GRAPH_CLIENT_SECRET = "graph-client-secret-for-tests-0123456789"


@pytest.fixture(scope="session")
def local_tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTls:
    """The local CA and server certificate the HTTPS stand-ins serve with."""
    return ensure_local_tls(tmp_path_factory.mktemp("tls"))


@pytest_asyncio.fixture(scope="session")
async def keyvault_standin(local_tls: LocalTls) -> AsyncIterator[KeyVaultHandle]:
    handle = await start_keyvault(tls=local_tls)
    yield handle
    await handle.aclose()


@pytest_asyncio.fixture(scope="session")
async def entra_standin(local_tls: LocalTls) -> AsyncIterator[EntraHandle]:
    handle = await start_entra(tls=local_tls, clients={GRAPH_CLIENT_ID: GRAPH_CLIENT_SECRET})
    yield handle
    await handle.aclose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly when the portal's browser tests did not run (they need the system Chromium)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if any(
        "test_portal_browser" in str(getattr(report, "nodeid", "") or report.location[0])
        for report in skipped
    ):
        terminalreporter.write_line(
            f"Browser tests were skipped: {Path('/usr/bin/chromium')} or the playwright package is missing."
        )
