"""Pydantic models: API requests and responses (camelCase on the wire) and stored records."""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_pascal


class ApiModel(BaseModel):
    """Base of every request and response body: camelCase JSON, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class HealthStatus(ApiModel):
    status: str = "ok"


# --- Secrets (Key Vault) ----------------------------------------------------------------------------


class TokenSet(BaseModel):
    """A tenant's ServiceNow OAuth tokens, as kept in Key Vault (never in tables or logs).

    The tokens are `SecretStr` so that a stray `repr`, f-string or log line shows `**********`;
    call `.get_secret_value()` only where the value goes on the wire.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    access_token: SecretStr
    refresh_token: SecretStr
    access_token_expires_at: AwareDatetime
    refresh_token_expires_at: AwareDatetime


# --- Improvement actions (Microsoft Graph secureScoreControlProfiles) -------------------------------

RecommendationCategory = Literal["Devices", "Data", "Apps", "Identity", "Infrastructure"]


class ImprovementAction(ApiModel):
    """One Secure Score improvement action (a Graph `secureScoreControlProfile`), in our terms."""

    id: str
    title: str
    remediation: str | None = None
    control_category: RecommendationCategory | None = None
    action_url: str | None = None
    rank: int | None = None
    max_score: float | None = None
    user_impact: str | None = None
    implementation_cost: str | None = None
    tier: str | None = None
    threats: tuple[str, ...] = ()
    deprecated: bool = False


# --- Stored records (Table Storage) -----------------------------------------------------------------


class ConnectionStatus(StrEnum):
    NOT_CONFIGURED = "not_configured"
    PENDING_AUTHORIZATION = "pending_authorization"
    CONNECTED = "connected"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"


class StoredRecord(BaseModel):
    """A table row. Property names are PascalCase, as Table Storage tooling shows them."""

    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="ignore")

    etag: str | None = Field(default=None, exclude=True)


StateNames = dict[str, dict[str, str]]


class Connection(StoredRecord):
    """A tenant's ServiceNow connection (`connections` table, PK tenant id, RK `servicenow`).

    No secret values: the client secret and tokens live in Key Vault.
    """

    tenant_id: str
    instance: str
    instance_url: str
    client_id: str
    status: ConnectionStatus
    connected_by: str | None = None
    connected_by_name: str | None = None
    connected_at: AwareDatetime | None = None
    access_token_expires_at: AwareDatetime | None = None
    refresh_token_expires_at: AwareDatetime | None = None
    last_sync_at: AwareDatetime | None = None
    last_error: str | None = None
    # The OAuth state of the latest authorize URL: only that one may complete (an older URL, e.g.
    # one a re-authorize replaced, is refused). None once connected.
    pending_state_id: str | None = None
    state_names: StateNames = Field(default_factory=dict)
    # The instance's own state labels (its `sys_choice` rows), refreshed by the daily reconciliation.
    instance_state_labels: StateNames = Field(default_factory=dict)
    watermarks: dict[str, str] = Field(default_factory=dict)
    # Sync bookkeeping (issue 7): until when one worker owns this tenant's sync (so two messages for
    # the same tenant never pull and write at once), and when every ticket was last reconciled.
    sync_lease_until: AwareDatetime | None = None
    last_reconciled_at: AwareDatetime | None = None
    # When the last successful sync started (before it queried ServiceNow): a sync request made
    # before then is covered by that run. `last_sync_at` is when it ended.
    last_sync_started_at: AwareDatetime | None = None
    # ServiceNow asked us (Retry-After) to stay away until then: the timer does not queue the tenant
    # and the worker drops its messages until that time.
    sync_not_before: AwareDatetime | None = None
    updated_at: AwareDatetime

    def is_same_live_grant(self, other: Connection) -> bool:
        """Still connected through the grant `other` was read with: no re-authorization,
        reconfiguration or dead grant recorded since (a write based on `other` is then stale)."""
        return self.status == ConnectionStatus.CONNECTED and (
            self.tenant_id,
            self.instance_url,
            self.client_id,
            self.connected_at,
        ) == (other.tenant_id, other.instance_url, other.client_id, other.connected_at)


class OAuthState(StoredRecord):
    """One authorization attempt (`oauthstates` table, PK state id, RK `state`). Used once.

    The PKCE verifier is not stored: it is derived from the state id with a key kept in Key Vault.
    """

    state_id: str
    key_version: str | None = None  # the app key version the PKCE verifier is derived with
    tenant_id: str
    user_id: str
    user_name: str
    instance_url: str
    client_id: str
    created_at: AwareDatetime
    expires_at: AwareDatetime
    consumed_at: AwareDatetime | None = None


# --- Provisioning API ---------------------------------------------------------------------------------

StateName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ConfigureConnection(ApiModel):
    """PUT /api/provisioning. `clientSecret` may be left out to keep the stored one."""

    instance: str = Field(min_length=1, max_length=253)
    client_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$")
    client_secret: SecretStr | None = Field(default=None, min_length=1, max_length=512)


class ConfigureResult(ApiModel):
    status: ConnectionStatus
    authorize_url: str


class AuthorizeResult(ApiModel):
    authorize_url: str


class ConnectionView(ApiModel):
    """GET /api/provisioning: what the portal shows about the tenant's connection."""

    status: ConnectionStatus
    instance: str | None = None
    instance_url: str | None = None
    client_id: str | None = None
    connected_by: str | None = None
    connected_at: AwareDatetime | None = None
    access_token_expires_at: AwareDatetime | None = None
    refresh_token_expires_at: AwareDatetime | None = None
    last_sync_at: AwareDatetime | None = None
    last_error: str | None = None
    # True when the refresh token dies within 14 days: ServiceNow does not extend it on refresh,
    # so an admin must re-authorize before then or the sync stops.
    refresh_token_expires_soon: bool = False
    state_names: StateNames


class StateNamesUpdate(ApiModel):
    """PUT /api/provisioning/state-names: custom names by table and state code; null reverts one."""

    incident: dict[str, StateName | None] = Field(default_factory=dict, alias="incident")
    change_request: dict[str, StateName | None] = Field(default_factory=dict, alias="change_request")


class CallbackParams(BaseModel):
    """The query string ServiceNow redirects the admin's browser back with."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    state: str | None = Field(default=None, max_length=256)
    code: str | None = Field(default=None, max_length=4096)
    error: str | None = Field(default=None, max_length=256)


# --- Tickets --------------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
TicketType = Literal["incident", "change_request"]
RecommendationSource = Literal["microsoft", "user"]
IdempotencyStatus = Literal["in_progress", "completed"]
TicketName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=160)]
TicketDescription = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]


class CreateTicket(ApiModel):
    """POST /api/tickets.

    `name`, `description` and `recommendationCategory` may be left out when `improvementActionId`
    is given (they are then read from Secure Score). Whether `dueDate` is in the past depends on
    the clock, so the service checks it, not the model.
    """

    type: TicketType
    name: TicketName | None = None
    description: TicketDescription | None = None
    priority: int = Field(ge=1, le=5, strict=True)
    due_date: date
    recommendation_source: RecommendationSource
    recommendation_category: RecommendationCategory | None = None
    improvement_action_id: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=r"^[0-9A-Za-z_.-]+$"
    )

    @field_validator("due_date", mode="before")
    @classmethod
    def _calendar_date(cls, value: object) -> object:
        # Lax `date` would also take numbers (Unix times) and full date-times: only YYYY-MM-DD is a due date.
        if isinstance(value, str) and not _ISO_DATE.match(value):
            raise ValueError("must be a date in the form YYYY-MM-DD")
        if not isinstance(value, str | date):
            raise ValueError("must be a date in the form YYYY-MM-DD")
        return value

    @model_validator(mode="after")
    def _filled_or_from_secure_score(self) -> CreateTicket:
        if self.improvement_action_id is None:
            missing = [
                alias
                for alias, value in (
                    ("name", self.name),
                    ("recommendationCategory", self.recommendation_category),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"{' and '.join(missing)} required unless improvementActionId is given")
        return self


class TicketView(ApiModel):
    """A ticket as the portal shows it (DESIGN.md section 4)."""

    id: str
    type: TicketType
    number: str
    sys_id: str
    url: str
    state: str
    state_name: str
    name: str
    description: str
    priority: int
    due_date: date
    recommendation_source: RecommendationSource
    recommendation_category: RecommendationCategory
    improvement_action_id: str | None
    created_by: str
    created_at: AwareDatetime
    state_updated_at: AwareDatetime
    # Set when the sync found the record gone from ServiceNow; `state` is then the last one seen.
    deleted_in_service_now_at: AwareDatetime | None = None


class TicketPage(ApiModel):
    items: list[TicketView]
    continuation_token: str | None = None


class TicketListQuery(ApiModel):
    """GET /api/tickets query parameters."""

    type: TicketType | None = None
    state: str | None = Field(default=None, min_length=1, max_length=8, pattern=r"^-?[0-9]{1,6}$")
    top: int = Field(default=50, ge=1, le=100)
    continuation_token: str | None = Field(default=None, min_length=1, max_length=2048)


class StateCount(ApiModel):
    state: str
    name: str
    count: int


class TicketTypeSummary(ApiModel):
    total: int
    states: list[StateCount]


class TicketSummary(ApiModel):
    """GET /api/tickets/summary: the portal's two cards, keyed like the ticket types."""

    incident: TicketTypeSummary = Field(alias="incident")
    change_request: TicketTypeSummary = Field(alias="change_request")


class Ticket(StoredRecord):
    """A ticket we created (`tickets` table, PK tenant id, RK ticket id: newest first).

    `instance_url` is the instance the record lives in, so its link stays right after the tenant
    connects another instance. `state` is ServiceNow's code; the sync (issue 7) moves it.
    """

    tenant_id: str
    ticket_id: str
    type: TicketType
    sys_id: str
    number: str
    instance_url: str
    name: str
    description: str
    priority: int
    due_date: date
    recommendation_source: RecommendationSource
    recommendation_category: RecommendationCategory
    improvement_action_id: str | None = None
    created_by: str
    created_by_name: str
    created_at: AwareDatetime
    state: str
    state_updated_at: AwareDatetime
    servicenow_updated_on: str | None = None

    @field_serializer("due_date")
    def _due_date_as_text(self, value: date) -> str:
        return value.isoformat()  # Table Storage has no date type (only date-times)

    # Set by the sync (issue 7) when the record no longer exists in ServiceNow: `state` then keeps
    # the last state seen, and the portal shows the ticket as deleted rather than as that state.
    deleted_in_servicenow_at: AwareDatetime | None = None


class IdempotencyRecord(StoredRecord):
    """A claimed Idempotency-Key (`idempotency` table, PK tenant id, RK sha256 hex of the key).

    The ticket id is chosen before ServiceNow is called, so whoever finishes an interrupted create
    can find the record by `correlation_id`. `lease_until` says until when the current attempt
    owns the create; None or past means whoever holds the same request may take it over.
    `posted_at` is when the latest create that ServiceNow may have carried out was sent: written
    (with the lease) immediately before every POST, put back when ServiceNow certainly did not
    process that one. Until it is older than the settle window no new create is sent, and a
    claim that has one is never released (its record may exist).
    """

    tenant_id: str
    key_hash: str
    fingerprint: str
    ticket_id: str
    status: IdempotencyStatus
    created_by: str
    created_by_name: str
    created_at: AwareDatetime
    lease_until: AwareDatetime | None = None
    posted_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None


# --- Sync (issue 7) -----------------------------------------------------------------------------------

SYNC_QUEUE = "sync-requests"  # the queue the timer fans out on; failures land in sync-requests-poison
SyncReason = Literal["timer", "manual"]


class SyncRequest(ApiModel):
    """One message on the `sync-requests` queue: sync this tenant's tokens and ticket states."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    tenant_id: str = Field(min_length=1, max_length=100, pattern=r"^[0-9A-Za-z-]+$")
    reason: SyncReason
    requested_at: AwareDatetime


class SyncQueued(ApiModel):
    """POST /api/sync: the sync was queued (it runs shortly, on the queue worker)."""

    status: Literal["queued"] = "queued"
    requested_at: AwareDatetime
