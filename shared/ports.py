"""The ports: what the services need from the outside world, as Protocols.

Services depend on these and nothing else outside the core; adapters (`shared/stores`,
`shared/servicenow`, `shared/graph.py`) implement them; `shared/bootstrap.py` wires them; the
test fakes in `tests/fakes` implement them too and are type-checked against them.

Every method raises only errors of `shared.errors`: `PreconditionFailed` for a conditional write
that lost a race, `UpstreamUnavailable` when the store or service did not answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import SecretStr

from shared.models import ConnectionStatus, ImprovementAction, TicketType
from shared.records import (
    ActionTicket,
    AppKey,
    Connection,
    IdempotencyRecord,
    OAuthState,
    StateChangeResult,
    Ticket,
    TicketStateChange,
    TicketSyncEntry,
    TokenSet,
)
from shared.remediation_models import RemediationFlag, TicketCounts

ServiceNowRecord = dict[str, Any]

# --- Table Storage -----------------------------------------------------------------------------------


class ConnectionStore(Protocol):
    """The `connections` table: one row per tenant."""

    async def get(self, tenant_id: str) -> Connection | None: ...

    async def recent(self, tenant_id: str) -> Connection | None:
        """The row as this process last read or wrote it, if that was within a few seconds
        (`stores.connections.CONNECTION_CACHE_TTL_S`); else read. A write through this store is
        seen at once; one by another process within that bound."""
        ...

    async def put(self, connection: Connection) -> Connection:
        """Write unconditionally (a new configuration replaces the old one)."""
        ...

    async def replace(self, connection: Connection) -> Connection:
        """Write only if the row is unchanged since it was read (its ETag); PreconditionFailed otherwise."""
        ...

    async def update(
        self, tenant_id: str, change: Callable[[Connection], dict[str, Any]], *, attempts: int = 3
    ) -> Connection | None:
        """Read, apply `change` (the fields to set; {} leaves the row) and write back with the ETag,
        re-reading after a lost race. None when there is no row."""
        ...

    async def delete(self, tenant_id: str) -> None: ...

    def with_status(self, status: ConnectionStatus) -> AsyncIterator[Connection]: ...


class OAuthStateStore(Protocol):
    """The `oauthstates` table: one row per authorization attempt."""

    async def add(self, state: OAuthState) -> None: ...

    async def get(self, state_id: str) -> OAuthState | None: ...

    async def consume(self, state: OAuthState, at: datetime) -> OAuthState:
        """Mark used, ETag-conditional: PreconditionFailed when another request used it first."""
        ...

    async def delete_expired(self, before: datetime, *, limit: int = 1000) -> int: ...


class TicketStore(Protocol):
    """The `tickets` table: one partition per tenant, newest ticket first."""

    async def add(self, ticket: Ticket) -> Ticket:
        """Insert; PreconditionFailed when the ticket id exists."""
        ...

    async def replace(self, ticket: Ticket) -> Ticket:
        """ETag-conditional write of the whole row; PreconditionFailed when it changed since read."""
        ...

    async def get(self, tenant_id: str, ticket_id: str) -> Ticket | None: ...

    async def page(
        self,
        tenant_id: str,
        *,
        type: TicketType | None = None,
        state: str | None = None,
        flag: RemediationFlag | None = None,
        top: int = 50,
        continuation_token: str | None = None,
    ) -> tuple[list[Ticket], str | None]:
        """One page, newest first, of the tickets that match every filter given (`flag`: the
        remediation flag is set), and the next page's token (None at the end).
        BadRequest for a continuation token this store did not issue for the tenant."""
        ...

    async def count_by_state(self, tenant_id: str) -> TicketCounts:
        """Tickets by type and state, and by type and remediation flag, from one partition query."""
        ...

    async def sync_index(self, tenant_id: str) -> dict[str, TicketSyncEntry]:
        """Every ticket of the tenant by id, only the columns the sync compares (one partition query)."""
        ...

    async def apply_state_changes(
        self, tenant_id: str, changes: Sequence[TicketStateChange]
    ) -> StateChangeResult:
        """Merge new states into existing rows, 50 per transaction (each with its timeline event); a
        missing row is skipped and reported, never made."""
        ...

    async def merge_states(self, tenant_id: str, changes: Sequence[TicketStateChange]) -> str | None:
        """Merge at most 50 new states (with their timeline events) in one transaction, all or
        nothing, into rows that exist (never making one), without reading them. None once written;
        the id of a row that does not exist when that failed the transaction (nothing written)."""
        ...

    async def mark_deleted(self, tenant_id: str, ticket_ids: Sequence[str], at: datetime) -> int: ...

    async def by_improvement_action(self, tenant_id: str) -> dict[str, list[ActionTicket]]:
        """The tenant's tickets made for an improvement action, by action id, newest first; only
        the columns a listing of actions shows."""
        ...


class IdempotencyClaims(Protocol):
    """The `idempotency` table: one claim per tenant and Idempotency-Key."""

    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord:
        """Conditional insert; PreconditionFailed when the key is taken."""
        ...

    async def get(self, tenant_id: str, key_hash: str) -> IdempotencyRecord | None: ...

    async def replace(self, record: IdempotencyRecord) -> IdempotencyRecord:
        """ETag-conditional write; PreconditionFailed when another request wrote it since."""
        ...

    async def release(self, record: IdempotencyRecord) -> None:
        """ETag-conditional delete: the key is free again."""
        ...

    async def delete_expired(self, before: datetime, *, limit: int = 1000) -> int:
        """Delete claims made before `before`, at most `limit`; returns how many."""
        ...

    async def stale_in_progress(
        self, *, written_before: datetime, created_after: datetime, limit: int
    ) -> list[IdempotencyRecord]:
        """Deferred claims in progress, made after `created_after`, last written before
        `written_before` (at most `limit`)."""
        ...


class TicketCreatedHook(Protocol):
    """Told of each ticket a request made with its ServiceNow record (the Secure Score write-back).
    It never raises: what it does is not part of the create."""

    async def ticket_created(self, connection: Connection, ticket: Ticket) -> None: ...


class MessageQueue(Protocol):
    """One Storage queue that services put text messages on."""

    @property
    def name(self) -> str: ...

    async def send(self, body: str, *, delay_s: int = 0) -> None:
        """Enqueue one message, invisible for `delay_s` seconds."""
        ...


# --- Key Vault ---------------------------------------------------------------------------------------


class SecretStore(Protocol):
    """Where a tenant's ServiceNow credentials live. Values are `SecretStr`; absent means None."""

    async def get_client_secret(self, tenant_id: str, *, fresh: bool = False) -> SecretStr | None:
        """The tenant's ServiceNow OAuth client secret. `fresh` bypasses the read cache."""
        ...

    async def set_client_secret(self, tenant_id: str, client_secret: SecretStr) -> None: ...

    async def get_tokens(self, tenant_id: str, *, fresh: bool = False) -> TokenSet | None:
        """The tenant's ServiceNow token set. `fresh` bypasses the read cache."""
        ...

    async def set_tokens(self, tenant_id: str, tokens: TokenSet, *, restore_deleted: bool = True) -> None:
        """Store the token set. `restore_deleted=False` refuses (ConnectionNotReady) to bring back a
        soft-deleted secret: a background refresh must not undo a removal that raced with it."""
        ...

    async def delete_tenant(self, tenant_id: str) -> None:
        """Remove both of the tenant's secrets for good (soft delete, then purge where allowed)."""
        ...

    async def app_key(self, name: str, version: str | None = None) -> AppKey:
        """An app-wide random key: the latest version, created on first use, or the given version."""
        ...


# --- ServiceNow --------------------------------------------------------------------------------------


class ServiceNowOAuth(Protocol):
    """The instance's OAuth endpoints (authorization code with PKCE, refresh, revoke)."""

    def authorize_url(
        self, instance_url: str, *, client_id: str, redirect_uri: str, state: str, verifier: str
    ) -> str: ...

    async def exchange_code(
        self,
        instance_url: str,
        *,
        client_id: str,
        client_secret: SecretStr,
        code: str,
        redirect_uri: str,
        verifier: str,
        state: str,
    ) -> TokenSet:
        """UpstreamRejected when ServiceNow refuses the code."""
        ...

    async def refresh(
        self, instance_url: str, *, client_id: str, client_secret: SecretStr, tokens: TokenSet
    ) -> TokenSet:
        """GrantRevoked when the refresh token or the client is no longer valid."""
        ...

    async def revoke(self, instance_url: str, token: SecretStr) -> None:
        """Best effort: never raises."""
        ...


class AccessTokenSource(Protocol):
    """A valid access token for a connection (what the Table API client authenticates with)."""

    async def access_token(self, connection: Connection) -> SecretStr: ...

    async def after_rejection(self, connection: Connection, rejected: SecretStr) -> SecretStr:
        """ServiceNow refused `rejected` (401): a newer token, refreshing unless someone already did."""
        ...


class ServiceNowRecords(Protocol):
    """The Table API of a tenant's instance. Reads are retried; `create` is sent once.

    `create` awaits `before_post` immediately before the POST leaves (after fetching the access
    token) and raises `UpstreamUnavailable` with `ambiguous` set when ServiceNow may have made the
    record all the same.
    """

    async def create(
        self,
        connection: Connection,
        table: str,
        fields: dict[str, str],
        *,
        before_post: Callable[[], Awaitable[None]] | None = None,
    ) -> ServiceNowRecord: ...

    async def find_one(
        self, connection: Connection, table: str, query: str, fields: list[str]
    ) -> ServiceNowRecord | None: ...

    def query(
        self, connection: Connection, table: str, query: str, fields: list[str], *, page_size: int = ...
    ) -> AsyncIterator[list[ServiceNowRecord]]:
        """Every matching record, a page at a time, following `Link` headers."""
        ...

    async def page(
        self, connection: Connection, table: str, query: str, fields: list[str], *, limit: int = ...
    ) -> list[ServiceNowRecord]:
        """The first `limit` matching records: one request (for keyset paging)."""
        ...


@dataclass(frozen=True)
class ProbeAnswer:
    """What one probe GET of an instance got back, whatever its status."""

    status: int
    date: datetime | None = None  # the instance's `Date` header (its clock), when readable
    records: int = 0  # records in a 200's result
    said: str = ""  # ServiceNow's own words from an error envelope, if any


class InstanceProbe(Protocol):
    """Read-only probes of a tenant's instance for the connection test: GETs, never a write."""

    async def reach(self, connection: Connection) -> ProbeAnswer:
        """One GET without a token, sent once: any answer shows the instance is there.
        UpstreamUnavailable when none came (or only a 5xx)."""
        ...

    async def read_one(self, connection: Connection, table: str) -> ProbeAnswer:
        """GET at most one record of `table` with the connection's token, whatever the status.
        Raises as the other reads do: UpstreamUnavailable, TokenRefused, ReauthorizationRequired."""
        ...


class TokenRefresher(Protocol):
    """Keeps a connection's access token fresh (the sync refreshes before it reads)."""

    async def refresh_if_expiring(self, connection: Connection, within: timedelta) -> TokenSet:
        """The token set, refreshed first when the access token expires within `within`.
        ReauthorizationRequired (recorded on the connection) when the grant is dead."""
        ...


# --- Microsoft Graph ---------------------------------------------------------------------------------


class ImprovementActions(Protocol):
    """Secure Score improvement actions (`secureScoreControlProfiles`) of a tenant."""

    async def get_improvement_action(self, tenant_id: str, action_id: str) -> ImprovementAction:
        """NotFound when Secure Score does not know the action; DependencyNotConfigured without Graph."""
        ...

    async def list_improvement_actions(self, tenant_id: str) -> list[ImprovementAction]:
        """Every improvement action of the tenant (every page). DependencyNotConfigured without Graph."""
        ...

    async def control_scores(self, tenant_id: str) -> dict[str, float]:
        """The points of each control (by name, an action's id) in the tenant's latest Secure Score;
        {} when it has none yet. DependencyNotConfigured without Graph."""
        ...
