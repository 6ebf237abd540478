"""Composition root: builds the real adapters lazily, once per process, and lets tests override them.

Nothing here runs at import time, and SDK modules are imported only when an adapter is first
built, so importing the function app stays cheap. The first invocation that needs an adapter
builds it and warm invocations reuse it: HTTP connection pools and token caches live as long as
the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from shared.settings import Settings, get_settings

if TYPE_CHECKING:
    import httpx

    from shared.graph import GraphClient
    from shared.servicenow.oauth import ServiceNowOAuth
    from shared.servicenow.table_api import ServiceNowTables
    from shared.servicenow.tokens import AccessTokens
    from shared.services.provisioning import ProvisioningService
    from shared.stores.connections import ConnectionRepository, OAuthStateRepository
    from shared.stores.secrets import SecretStore
    from shared.stores.tables import TableStore

T = TypeVar("T")


class Container:
    """The app's adapters and services, each built on first use. `override` swaps in others."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self._settings = settings
        self._instances: dict[str, Any] = dict(overrides)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    def override(self, **instances: Any) -> None:
        self._instances.update(instances)

    def _get(self, name: str, build: Callable[[], T]) -> T:
        if name not in self._instances:
            self._instances[name] = build()
        return cast(T, self._instances[name])

    # --- adapters ------------------------------------------------------------------------------

    @property
    def servicenow_http(self) -> httpx.AsyncClient:
        from shared.servicenow.transport import new_http_client

        return self._get("servicenow_http", new_http_client)

    @property
    def tables(self) -> TableStore:
        return self._get("tables", self._build_tables)

    def _build_tables(self) -> TableStore:
        from azure.data.tables.aio import TableServiceClient

        from shared.stores.tables import TableStore

        settings = self.settings
        if settings.data_storage:
            return TableStore(TableServiceClient.from_connection_string(settings.data_storage))
        from azure.identity.aio import DefaultAzureCredential

        assert settings.data_storage_table_service_uri is not None  # the Settings validator ensures it
        credential = DefaultAzureCredential(
            managed_identity_client_id=settings.data_storage_client_id or settings.azure_client_id
        )
        return TableStore(TableServiceClient(settings.data_storage_table_service_uri, credential=credential))

    @property
    def secrets(self) -> SecretStore:
        from shared.stores.secrets import KeyVaultSecretStore

        return self._get("secrets", lambda: KeyVaultSecretStore.from_settings(self.settings))

    @property
    def graph(self) -> GraphClient:
        from shared.graph import GraphClient

        return self._get("graph", lambda: GraphClient.from_settings(self.settings))

    @property
    def servicenow_oauth(self) -> ServiceNowOAuth:
        from shared.servicenow.oauth import ServiceNowOAuth

        return self._get("servicenow_oauth", lambda: ServiceNowOAuth(self.servicenow_http))

    @property
    def access_tokens(self) -> AccessTokens:
        from shared.servicenow.tokens import AccessTokens

        return self._get(
            "access_tokens",
            lambda: AccessTokens(secrets=self.secrets, oauth=self.servicenow_oauth, connections=self.connections),
        )

    @property
    def servicenow_tables(self) -> ServiceNowTables:
        from shared.servicenow.table_api import ServiceNowTables

        return self._get("servicenow_tables", lambda: ServiceNowTables(self.servicenow_http, self.access_tokens))

    @property
    def connections(self) -> ConnectionRepository:
        from shared.stores.connections import ConnectionRepository

        return self._get("connections", lambda: ConnectionRepository(self.tables))

    @property
    def oauth_states(self) -> OAuthStateRepository:
        from shared.stores.connections import OAuthStateRepository

        return self._get("oauth_states", lambda: OAuthStateRepository(self.tables))

    # --- services ------------------------------------------------------------------------------

    @property
    def provisioning(self) -> ProvisioningService:
        from shared.services.provisioning import ProvisioningConfig, ProvisioningService

        def build() -> ProvisioningService:
            settings = self.settings
            return ProvisioningService(
                connections=self.connections,
                states=self.oauth_states,
                secrets=self.secrets,
                oauth=self.servicenow_oauth,
                config=ProvisioningConfig(
                    redirect_uri=str(settings.oauth_redirect_uri),
                    portal_url=str(settings.portal_url),
                    url_template=settings.servicenow_url_template,
                    local_dev=settings.local_dev,
                ),
            )

        return self._get("provisioning", build)

    async def aclose(self) -> None:
        """Close every adapter that holds connections (the local host and tests call this)."""
        instances, self._instances = self._instances, {}
        for instance in instances.values():
            close = getattr(instance, "aclose", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result


_container: Container | None = None


def get_container() -> Container:
    global _container
    if _container is None:
        _container = Container()
    return _container


def set_container(container: Container | None) -> None:
    """Replace the process-wide container (tests, local host restarts)."""
    global _container
    _container = container
