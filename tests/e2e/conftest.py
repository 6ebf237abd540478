"""The end-to-end harness: the real function app on the local host, against the local stand-ins.

What a test gets from the `stack` fixture (function-scoped, about 0.1 s to start):

- the function app (`function_app.app`) served by `localdev.host.LocalHost` on a free port, with
  host.json's settings, in this process and event loop;
- one ServiceNow simulator (`stack.simulator`; more with `await stack.start_simulator()`), each
  with its own OAuth client whose secret is random per test;
- the Key Vault and Entra/Graph stand-ins (HTTPS, one local CA; started once per session);
- the session's Azurite (`azurite` fixture in tests/conftest.py);
- the app settings in the environment (`DataStorage`, `KEY_VAULT_URL`, `OAUTH_REDIRECT_URI` = this
  host's callback, `PORTAL_URL`, ...), a cleared settings cache and a fresh `shared.bootstrap`
  container, closed after the test.

Tests do not share anything that matters: each test uses fresh tenant ids (`stack.new_tenant()`),
its own simulators and its own container. Azurite tables and the vault are shared by the session,
so assert on *your* tenant's rows and secrets, never on counts of everything.

The sync timer is set to fire once a year (`SYNC_SCHEDULE`): tests run it on demand through the
host's admin API (`POST {stack.url}/admin/functions/{name}`), so nothing fires behind a test's back.

HTTP helpers that speak the API (connect through the consent page, status, remove, ...) are in
`tests/e2e/api.py`.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

import function_app
from localdev.azurite import AzuriteEndpoints
from localdev.entra import EntraHandle
from localdev.host import HostConfig, LocalHost
from localdev.keyvault import KeyVaultHandle
from localdev.servicenow import RunningSimulator, start_simulator
from localdev.tls import LocalTls
from shared.bootstrap import Container, set_container
from shared.clock import Clock
from shared.identity import PRINCIPAL_HEADER, Role, encode_principal
from shared.services.provisioning import ProvisioningService
from shared.settings import get_settings
from shared.stores.connections import CONNECTIONS
from tests.conftest import GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
PORTAL_URL = "https://portal.example.test/connectors/servicenow"
NEVER = "0 0 0 1 1 *"  # NCRONTAB: once a year


@dataclass
class Simulator:
    """A running ServiceNow simulator and the OAuth client registered on it.

    `state` is the live `SimulatorState` (records, tokens, clock) for direct inspection; the
    control API under `/__sim/` is reachable through `tokens()`, `stats()` and `control()`.
    """

    url: str
    client_id: str
    client_secret: str
    running: RunningSimulator
    http: httpx.AsyncClient

    @property
    def state(self) -> Any:
        return self.running.state

    async def control(self, method: str, path: str, json: Any = None) -> Any:
        """Call the control API (`/__sim/...`) and return the JSON answer."""
        response = await self.http.request(method, f"{self.url}/__sim/{path.lstrip('/')}", json=json)
        response.raise_for_status()
        return response.json() if response.content else None

    async def tokens(self) -> list[dict[str, Any]]:
        """Every grant the instance issued: client_id, refresh_token, revoked, access_tokens[...]."""
        answer = await self.control("GET", "tokens")
        return list(answer["grants"])

    async def stats(self) -> dict[str, int]:
        """Requests the instance served, by `METHOD /route`."""
        answer = await self.control("GET", "stats")
        return dict(answer["requests"])


@dataclass
class Stack:
    """Everything one end-to-end test talks to. Build requests with `client` (base URL = the host)."""

    url: str
    client: httpx.AsyncClient
    browser: httpx.AsyncClient
    host: LocalHost
    container: Container
    simulators: list[Simulator]
    keyvault: KeyVaultHandle
    entra: EntraHandle
    azurite: AzuriteEndpoints
    tls: LocalTls
    portal_url: str
    redirect_uri: str
    _tables: TableServiceClient
    _start_simulator: Callable[[], Any] = field(repr=False)

    @property
    def simulator(self) -> Simulator:
        """The first simulator (every stack has one)."""
        return self.simulators[0]

    async def start_simulator(self) -> Simulator:
        """One more ServiceNow instance (its own port, client, tokens and records), closed after the test."""
        simulator: Simulator = await self._start_simulator()
        self.simulators.append(simulator)
        return simulator

    # --- identities --------------------------------------------------------------------------

    @staticmethod
    def new_tenant() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def user_id(tenant_id: str, name: str) -> str:
        """The object id `as_user` gives `name` in `tenant_id` (stable, so tests can assert on it)."""
        return str(uuid.uuid5(uuid.UUID(tenant_id), name))

    def as_user(self, tenant_id: str, *roles: Role | str, name: str = "Test User") -> dict[str, str]:
        """Headers carrying the Easy Auth principal of a user of `tenant_id` with `roles`."""
        principal = encode_principal(
            tenant_id, self.user_id(tenant_id, name), [str(role) for role in roles], name=name
        )
        return {PRINCIPAL_HEADER: principal}

    def as_admin(self, tenant_id: str, name: str = "Ada Admin") -> dict[str, str]:
        return self.as_user(tenant_id, Role.ADMIN, name=name)

    # --- stored data -------------------------------------------------------------------------

    async def rows(self, table: str, partition_key: str | None = None) -> list[dict[str, Any]]:
        """The rows of an Azurite table (all, or one partition); [] when the table does not exist."""
        names = [t.name async for t in self._tables.list_tables()]
        if table not in names:
            return []
        client = self._tables.get_table_client(table)
        if partition_key is None:
            entities = client.list_entities()
        else:
            entities = client.query_entities("PartitionKey eq @pk", parameters={"pk": partition_key})
        return [dict(entity) async for entity in entities]

    async def all_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table in Azurite, by table name."""
        names = [t.name async for t in self._tables.list_tables()]
        return {name: await self.rows(name) for name in names}

    async def merge_row(self, table: str, entity: dict[str, Any]) -> None:
        """Change a stored row (test data setup, e.g. to make an OAuth state expire)."""
        await self._tables.get_table_client(table).update_entity(entity, mode=UpdateMode.MERGE)

    def vault_names(self, tenant_id: str) -> set[str]:
        """Names of the tenant's secrets in the Key Vault stand-in, live or soft-deleted."""
        state = self.keyvault.state
        return {name for name in [*state.secrets, *state.deleted] if tenant_id in name}

    def vault_value(self, name: str) -> str | None:
        """The current value of a live secret in the Key Vault stand-in."""
        versions = self.keyvault.state.secrets.get(name)
        return versions[-1].value if versions else None

    # --- the app's composition ----------------------------------------------------------------

    def override_provisioning(self, *, clock: Clock | None = None, **config: Any) -> None:
        """Serve the next requests with a ProvisioningService built from the container's real
        adapters, with a changed config (e.g. `local_dev=False`) and/or clock."""
        current = self.container.provisioning
        service = ProvisioningService(
            connections=self.container.connections,
            states=self.container.oauth_states,
            secrets=self.container.secrets,
            oauth=self.container.servicenow_oauth,
            config=replace(current._config, **config),
            push=current._push,
            **({"clock": clock} if clock is not None else {}),
        )
        self.container.override(provisioning=service)


@pytest_asyncio.fixture
async def stack(
    app_env: pytest.MonkeyPatch,
    azurite: AzuriteEndpoints,
    local_tls: LocalTls,
    keyvault_standin: KeyVaultHandle,
    entra_standin: EntraHandle,
) -> AsyncIterator[Stack]:
    env = {
        "DataStorage": azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "KEY_VAULT_URL": keyvault_standin.url,
        "LOCAL_CA_BUNDLE": str(local_tls.ca_path),
        "ENTRA_AUTHORITY_HOST": entra_standin.url,
        "GRAPH_BASE_URL": entra_standin.url,
        "GRAPH_CLIENT_ID": GRAPH_CLIENT_ID,
        "GRAPH_CLIENT_SECRET": GRAPH_CLIENT_SECRET,
        "PORTAL_URL": PORTAL_URL,
        "SYNC_SCHEDULE": NEVER,
        "LOCAL_DEV": "true",
    }
    for name, value in env.items():
        app_env.setenv(name, value)

    host = LocalHost(function_app.app, HostConfig.load(REPO_ROOT / "host.json"), max_polling_interval_s=0.2)
    url = await host.start(port=0)
    redirect_uri = f"{url}/api/oauth/callback"
    # The redirect URI names the host's real port, known only now; nothing has read settings yet.
    app_env.setenv("OAUTH_REDIRECT_URI", redirect_uri)
    get_settings.cache_clear()
    container = Container()
    set_container(container)

    browser = httpx.AsyncClient(timeout=10, follow_redirects=False)
    simulators: list[Simulator] = []

    async def new_simulator() -> Simulator:
        client_id = f"client-{secrets.token_hex(6)}"
        client_secret = secrets.token_urlsafe(24)
        running = await start_simulator(clients={client_id: client_secret})
        return Simulator(running.url, client_id, client_secret, running, browser)

    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10, follow_redirects=False) as client:
            stack = Stack(
                url=url,
                client=client,
                browser=browser,
                host=host,
                container=container,
                simulators=simulators,
                keyvault=keyvault_standin,
                entra=entra_standin,
                azurite=azurite,
                tls=local_tls,
                portal_url=PORTAL_URL,
                redirect_uri=redirect_uri,
                _tables=tables,
                _start_simulator=new_simulator,
            )
            await stack.start_simulator()
            yield stack
    finally:
        await host.stop()
        for simulator in simulators:
            await simulator.running.aclose()
        await _retire_connections(tables)
        await browser.aclose()
        await tables.close()
        await container.aclose()
        set_container(None)
        get_settings.cache_clear()


async def _retire_connections(tables: TableServiceClient) -> None:
    """Delete the connected tenants a test leaves in the session's Azurite. Their simulators are
    closed with the test, so every later timer run would queue a sync for each of them that fails
    only after its connection retries, and the tenants of later tests would wait behind them."""
    table = tables.get_table_client(CONNECTIONS)
    try:
        rows = [
            e async for e in table.query_entities("Status eq 'connected'", select=["PartitionKey", "RowKey"])
        ]
    except ResourceNotFoundError:
        return
    for row in rows:
        with contextlib.suppress(ResourceNotFoundError):
            await table.delete_entity(row["PartitionKey"], row["RowKey"])
