"""Pydantic models: API requests and responses (camelCase on the wire) and stored records."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, StringConstraints
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
    state_names: StateNames = Field(default_factory=dict)
    watermarks: dict[str, str] = Field(default_factory=dict)
    updated_at: AwareDatetime


class OAuthState(StoredRecord):
    """One authorization attempt (`oauthstates` table, PK state id, RK `state`). Used once.

    The PKCE verifier is not stored: it is derived from the state id with a key kept in Key Vault.
    """

    state_id: str
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
