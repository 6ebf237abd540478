"""Composition root: builds the real adapters lazily, once per process, and lets tests override them.

Nothing here runs at import time, and SDK modules are imported only when an adapter is first
built, so importing the function app stays cheap. The first invocation that needs an adapter
builds it and warm invocations reuse it: HTTP connection pools and token caches live as long as
the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from shared.settings import Settings, get_settings

if TYPE_CHECKING:
    import httpx

    from shared.ports import ImprovementActions, MessageQueue, SecretStore
    from shared.secure_score_ports import SecureScoreWriter
    from shared.servicenow.oauth import ServiceNowOAuthClient
    from shared.servicenow.table_api import ServiceNowTables
    from shared.services.access_tokens import AccessTokens
    from shared.services.diagnostics import DiagnosticsService
    from shared.services.fleet import FleetService
    from shared.services.improvement_actions import ImprovementActionsService
    from shared.services.provisioning import ProvisioningService
    from shared.services.push_app import PushServices
    from shared.services.remediation_check import RemediationCheck
    from shared.services.rules import RuleService
    from shared.services.syncing import SyncService
    from shared.services.ticket_events import TicketTimelines
    from shared.services.ticket_notes import TicketNotes
    from shared.services.ticketing import TicketingService
    from shared.stores.connections import ConnectionRepository, OAuthStateRepository
    from shared.stores.idempotency import IdempotencyRepository
    from shared.stores.remediation_rows import RemediationRowRepository
    from shared.stores.tables import TableStore
    from shared.stores.ticket_events import TicketEventRepository
    from shared.stores.tickets import TicketRepository

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

        from shared.stores.tables import STORAGE_TIMEOUTS, TableStore

        settings = self.settings
        if settings.data_storage:
            return TableStore(
                TableServiceClient.from_connection_string(settings.data_storage, **STORAGE_TIMEOUTS)
            )
        from azure.identity.aio import DefaultAzureCredential

        assert settings.data_storage_table_service_uri is not None  # the Settings validator ensures it
        credential = DefaultAzureCredential(
            managed_identity_client_id=settings.data_storage_client_id or settings.azure_client_id
        )
        return TableStore(
            TableServiceClient(
                settings.data_storage_table_service_uri, credential=credential, **STORAGE_TIMEOUTS
            )
        )

    @property
    def secrets(self) -> SecretStore:
        from shared.stores.secrets import KeyVaultSecretStore

        return self._get("secrets", lambda: KeyVaultSecretStore.from_settings(self.settings))

    @property
    def graph(self) -> ImprovementActions:
        from shared.graph import GraphClient

        return self._get("graph", lambda: GraphClient.from_settings(self.settings))

    @property
    def secure_score_writer(self) -> SecureScoreWriter:
        from shared.graph import GraphClient

        # The same client as `graph`: one token cache and one semaphore per tenant.
        return self._get("graph", lambda: GraphClient.from_settings(self.settings))

    @property
    def servicenow_oauth(self) -> ServiceNowOAuthClient:
        from shared.servicenow.oauth import ServiceNowOAuthClient

        return self._get("servicenow_oauth", lambda: ServiceNowOAuthClient(self.servicenow_http))

    @property
    def access_tokens(self) -> AccessTokens:
        from shared.services.access_tokens import AccessTokens

        return self._get(
            "access_tokens",
            lambda: AccessTokens(
                secrets=self.secrets, oauth=self.servicenow_oauth, connections=self.connections
            ),
        )

    @property
    def servicenow_tables(self) -> ServiceNowTables:
        from shared.servicenow.table_api import ServiceNowTables

        return self._get(
            "servicenow_tables", lambda: ServiceNowTables(self.servicenow_http, self.access_tokens)
        )

    @property
    def connections(self) -> ConnectionRepository:
        from shared.stores.connections import ConnectionRepository

        return self._get("connections", lambda: ConnectionRepository(self.tables))

    @property
    def oauth_states(self) -> OAuthStateRepository:
        from shared.stores.connections import OAuthStateRepository

        return self._get("oauth_states", lambda: OAuthStateRepository(self.tables))

    @property
    def tickets(self) -> TicketRepository:
        from shared.stores.tickets import TicketRepository

        return self._get("tickets", lambda: TicketRepository(self.tables))

    @property
    def remediation_rows(self) -> RemediationRowRepository:
        from shared.stores.remediation_rows import RemediationRowRepository

        return self._get("remediation_rows", lambda: RemediationRowRepository(self.tables))

    @property
    def idempotency(self) -> IdempotencyRepository:
        from shared.stores.idempotency import IdempotencyRepository

        return self._get("idempotency", lambda: IdempotencyRepository(self.tables))

    @property
    def sync_queue(self) -> MessageQueue:
        from shared.models import SYNC_QUEUE

        return self._get("sync_queue", lambda: self._build_queue(SYNC_QUEUE))

    @property
    def ticket_queue(self) -> MessageQueue:
        from shared.models import TICKET_CREATE_QUEUE

        return self._get("ticket_queue", lambda: self._build_queue(TICKET_CREATE_QUEUE))

    def _build_queue(self, name: str) -> MessageQueue:
        from shared.stores.queues import StorageQueue

        settings = self.settings
        if settings.data_storage:
            return StorageQueue.from_connection_string(settings.data_storage, name)
        from azure.identity.aio import DefaultAzureCredential

        assert settings.data_storage_queue_service_uri is not None  # the Settings validator ensures it
        credential = DefaultAzureCredential(
            managed_identity_client_id=settings.data_storage_client_id or settings.azure_client_id
        )
        return StorageQueue.from_service_uri(settings.data_storage_queue_service_uri, name, credential)

    # --- services ------------------------------------------------------------------------------

    @property
    def ticketing(self) -> TicketingService:
        return self._get("ticketing", lambda: self.ticketing_with(self.graph))

    def ticketing_with(self, actions: ImprovementActions) -> TicketingService:
        from shared.services.ticketing import TicketingService

        return TicketingService(
            connections=self.connections,
            tickets=self.tickets,
            idempotency=self.idempotency,
            servicenow=self.servicenow_tables,
            actions=actions,
            queue=self.ticket_queue,
            created_hook=self.remediation_check,
        )

    @property
    def rules(self) -> RuleService:
        from shared.services.rules import RuleService
        from shared.stores.rules import RuleRepository

        return self._get("rules", lambda: RuleService.wired(RuleRepository(self.tables), self))

    @property
    def ticket_notes(self) -> TicketNotes:
        from shared.clock import SYSTEM_CLOCK
        from shared.services.ticket_notes import TicketNotes
        from shared.services.ticket_policy import TicketingPolicy

        return self._get(
            "ticket_notes",
            lambda: TicketNotes(
                tickets=self.tickets,
                connections=self.connections,
                records=self.servicenow_tables,
                journal=self.servicenow_tables,
                claims=self.idempotency,
                policy=TicketingPolicy(),
                clock=SYSTEM_CLOCK,
                events=self.ticket_events,
            ),
        )

    @property
    def ticket_events(self) -> TicketEventRepository:
        from shared.clock import SYSTEM_CLOCK
        from shared.stores.ticket_events import TicketEventRepository

        return self._get("ticket_events", lambda: TicketEventRepository(self.tables, SYSTEM_CLOCK))

    @property
    def ticket_timelines(self) -> TicketTimelines:
        from shared.services.ticket_events import TicketTimelines

        return self._get(
            "ticket_timelines", lambda: TicketTimelines(tickets=self.tickets, events=self.ticket_events)
        )

    @property
    def improvement_actions(self) -> ImprovementActionsService:
        from shared.services.improvement_actions import ImprovementActionsService

        return self._get(
            "improvement_actions",
            lambda: ImprovementActionsService(
                actions=self.graph, tickets=self.tickets, connections=self.connections
            ),
        )

    @property
    def diagnostics(self) -> DiagnosticsService:
        from shared.services.diagnostics import DiagnosticsService

        return self._get(
            "diagnostics",
            lambda: DiagnosticsService(
                connections=self.connections, tokens=self.access_tokens, probe=self.servicenow_tables
            ),
        )

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
                push=lambda: self.push.setup,
            )

        return self._get("provisioning", build)

    @property
    def fleet(self) -> FleetService:
        from shared.services.fleet import FleetService

        return self._get("fleet", lambda: FleetService(self.connections, push=self.push.setup))

    @property
    def push(self) -> PushServices:
        from shared.push_models import PUSH_QUEUE
        from shared.services.push_app import PushServices
        from shared.stores.push_hooks import TablePushHooks
        from shared.stores.push_keys import KeyVaultPushKeys

        def build() -> PushServices:
            keys = KeyVaultPushKeys.from_settings(self.settings)
            return PushServices.wired(TablePushHooks(self.tables), keys, self._build_queue(PUSH_QUEUE), self)

        return self._get("push", build)

    @property
    def syncing(self) -> SyncService:
        from shared.services.syncing import SyncService

        return self._get(
            "syncing",
            lambda: SyncService(
                connections=self.connections,
                tickets=self.tickets,
                tokens=self.access_tokens,
                records=self.servicenow_tables,
                queue=self.sync_queue,
                states=self.oauth_states,
                remediation=self.remediation_check,
            ),
        )

    @property
    def remediation_check(self) -> RemediationCheck:
        from shared.services.remediation_check import RemediationCheck

        return self._get(
            "remediation_check",
            lambda: RemediationCheck(
                tickets=self.remediation_rows,
                actions=self.graph,
                writer=self.secure_score_writer,
                connections=self.connections,
                grace=timedelta(days=self.settings.remediation_grace_days),
                notes=self.servicenow_tables,
                journal=self.servicenow_tables,
                after_read=self.rules.evaluation,
            ),
        )

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
    from shared.monitoring.azure_monitor import start_once

    start_once()  # the first invocation starts telemetry when it is configured; then a flag test
    return _container


def set_container(container: Container | None) -> None:
    """Replace the process-wide container (tests, local host restarts)."""
    global _container
    _container = container
