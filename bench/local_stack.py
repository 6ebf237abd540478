"""The function app on the local host against Azurite, the Key Vault and Entra/Graph stand-ins and
one ServiceNow simulator, in this process: the set-up of the benchmarks that go through HTTP
(`local_stack`), or that start the services and the host apart (`local_services`, `local_host`).

The app settings are put in the environment before `function_app` is imported, the redirect URI
once the host's port is known; requests to each service are counted on the wire (`wire`).
Everything is stopped, and the container closed, when the block ends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.wire import WireCount
from localdev.local_settings import REPO_ROOT

GRAPH_CLIENT = ("bench-graph-client", "bench-graph-secret-0123456789")
SERVICENOW_CLIENT = ("bench-client", "bench-client-secret")


@dataclass(frozen=True)
class LocalServices:
    connection_string: str  # Azurite's
    simulator: Any  # localdev.servicenow.RunningSimulator, its OAuth client SERVICENOW_CLIENT
    entra: Any  # localdev.entra.EntraHandle
    endpoints: dict[str, str]  # each service's base URL, by the name the wire counts it under


@dataclass(frozen=True)
class LocalStack:
    url: str  # the local host's base URL
    connection_string: str
    simulator: Any
    entra: Any
    wire: WireCount


@asynccontextmanager
async def local_stack() -> AsyncIterator[LocalStack]:
    async with local_services() as services, local_host() as url:
        wire = WireCount(services.endpoints)
        yield LocalStack(url, services.connection_string, services.simulator, services.entra, wire)


@asynccontextmanager
async def local_services() -> AsyncIterator[LocalServices]:
    """Azurite and the stand-ins, with the app's settings in the environment pointed at them."""
    from localdev.azurite import Azurite
    from localdev.entra import start_entra
    from localdev.keyvault import start_keyvault
    from localdev.servicenow import start_simulator
    from localdev.tls import ensure_local_tls

    azurite = Azurite()
    endpoints = await azurite.start()
    workdir = tempfile.TemporaryDirectory()
    tls = ensure_local_tls(Path(workdir.name) / "tls")
    keyvault = await start_keyvault(tls=tls)
    entra = await start_entra(tls=tls, clients={GRAPH_CLIENT[0]: GRAPH_CLIENT[1]})
    simulator = await start_simulator(clients={SERVICENOW_CLIENT[0]: SERVICENOW_CLIENT[1]})
    os.environ.update(
        {
            "DataStorage": endpoints.connection_string, "AzureWebJobsStorage": endpoints.connection_string,
            "KEY_VAULT_URL": keyvault.url, "LOCAL_CA_BUNDLE": str(tls.ca_path), "ENTRA_AUTHORITY_HOST": entra.url,
            "GRAPH_BASE_URL": entra.url, "GRAPH_CLIENT_ID": GRAPH_CLIENT[0], "GRAPH_CLIENT_SECRET": GRAPH_CLIENT[1],
            "PORTAL_URL": "https://portal.example.test/", "SYNC_SCHEDULE": "0 0 0 1 1 *", "LOCAL_DEV": "true",
        }
    )  # fmt: skip
    urls = {
        "ServiceNow": simulator.url, "Table": f"http://127.0.0.1:{endpoints.table_port}",
        "Queue": f"http://127.0.0.1:{endpoints.queue_port}", "Key Vault": keyvault.url, "Graph": entra.url,
    }  # fmt: skip
    try:
        yield LocalServices(endpoints.connection_string, simulator, entra, urls)
    finally:
        await simulator.aclose()
        await entra.aclose()
        await keyvault.aclose()
        await azurite.stop()
        workdir.cleanup()


@asynccontextmanager
async def local_host() -> AsyncIterator[str]:
    """The function app on the local host (its redirect URI set once the port is known) and a
    fresh container; its base URL."""
    import function_app
    from localdev.host import HostConfig, LocalHost
    from shared.bootstrap import Container, get_container, set_container
    from shared.settings import get_settings

    host = LocalHost(function_app.app, HostConfig.load(REPO_ROOT / "host.json"))
    url = await host.start(port=0)
    try:
        os.environ["OAUTH_REDIRECT_URI"] = f"{url}/api/oauth/callback"
        get_settings.cache_clear()
        set_container(Container())
        yield url
    finally:
        await host.stop()
        await get_container().aclose()
        set_container(None)
