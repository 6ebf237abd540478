"""Pydantic models of the HTTP API and the queues: requests and responses, camelCase on the wire.

Stored rows and Key Vault values are in `shared.records`."""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from shared.push_models import PushStatus
from shared.remediation_models import FlagCounts, RemediationFlag, RemediationView, SecureScoreView
from shared.sync_models import ListedRow


class ApiModel(BaseModel):
    """Base of every request and response body: camelCase JSON, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class HealthStatus(ApiModel):
    status: Literal["ok", "misconfigured"] = "ok"
    # "SETTING: rule", never a value; only when misconfigured, so a healthy answer stays {"status":"ok"}
    problems: list[str] | None = None

    @model_serializer(mode="wrap")
    def _without_empty_problems(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.problems is None:
            data.pop("problems", None)
        return data


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
    # The newest `controlStateUpdates` entry's state (`shared.secure_score.CONTROL_STATES`) and comment.
    control_state: str | None = None
    control_state_comment: str | None = None


# --- Stored records (Table Storage) -----------------------------------------------------------------


class ConnectionStatus(StrEnum):
    NOT_CONFIGURED = "not_configured"
    PENDING_AUTHORIZATION = "pending_authorization"
    CONNECTED = "connected"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"


StateNames = dict[str, dict[str, str]]  # ticket type -> state code -> name


# --- Provisioning API ---------------------------------------------------------------------------------

StateName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ConfigureConnection(ApiModel):
    """PUT /api/provisioning. `clientSecret` may be left out to keep the stored one."""

    instance: str = Field(min_length=1, max_length=253)
    client_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$")
    client_secret: SecretStr | None = Field(default=None, min_length=1, max_length=512)


class AuthorizeLink(ApiModel):
    """An answer that hands out an authorize link: the connection's status and the link to open."""

    status: ConnectionStatus
    authorize_url: str


class ConfigureResult(AuthorizeLink):
    """PUT /api/provisioning: saved; `status` is `pending_authorization`."""


class AuthorizeResult(AuthorizeLink):
    """POST /api/provisioning/authorize: a fresh link; `status` is the connection's, unchanged until
    the link is completed (a connected tenant stays `connected`)."""


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
    # When the last successful sync started: a sync requested at or before then is done.
    last_sync_started_at: AwareDatetime | None = None
    # A sync worker holds the tenant's sync lease now (and it has not run out).
    sync_in_progress: bool = False
    last_error: str | None = None
    # True when the refresh token dies within 14 days: ServiceNow does not extend it on refresh,
    # so an admin must re-authorize before then or the sync stops.
    refresh_token_expires_soon: bool = False
    state_names: StateNames
    secure_score: SecureScoreView = Field(default_factory=SecureScoreView)
    push: PushStatus = Field(default_factory=PushStatus)  # push from ServiceNow (docs/push.md)


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
TicketName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=160)]
TicketDescription = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]
IMPROVEMENT_ACTION_ID = r"^[0-9A-Za-z_.-]*[0-9A-Za-z_-][0-9A-Za-z_.-]*$"
# creating: ServiceNow has not confirmed the record yet (a worker finishes it); created: the
# record exists; failed: it will not be made (`failureReason` says why).
TicketStatus = Literal["creating", "created", "failed"]


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
    # Graph's id characters, but not only dots: `.` and `..` are path segments that an HTTP client
    # resolves away, which would ask Graph for another resource than the action.
    improvement_action_id: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=IMPROVEMENT_ACTION_ID
    )

    @field_validator("due_date", mode="before")
    @classmethod
    def _calendar_date(cls, value: object) -> object:
        # Lax `date` would also take numbers (Unix times) and full date-times: only YYYY-MM-DD is a due date.
        if not isinstance(value, str | date) or (isinstance(value, str) and not _ISO_DATE.match(value)):
            raise PydanticCustomError("date_format", "must be a date in the form YYYY-MM-DD")
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
                # One error per field, each at its field (a model-level error would have no location).
                raise ValidationError.from_exception_data(
                    type(self).__name__,
                    [
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "required_without_action", "required unless improvementActionId is given"
                            ),
                            loc=(alias,),
                            input=None,
                        )
                        for alias in missing
                    ],
                )
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
    deleted_in_servicenow_at: AwareDatetime | None = Field(default=None, alias="deletedInServiceNowAt")
    # `creating` until ServiceNow confirms the record: `number`, `sysId`, `url`, `state` and
    # `stateName` are empty until then, and stay so when it `failed` (`failureReason` says why).
    status: TicketStatus = "created"
    failure_reason: str | None = None
    # Null for a ticket without an improvement action, or one neither checked nor written back yet.
    remediation: RemediationView | None = None


class TicketPage(ApiModel):
    items: list[TicketView]
    continuation_token: str | None = None


class TicketListQuery(ApiModel):
    """GET /api/tickets query parameters."""

    type: TicketType | None = None
    state: str | None = Field(default=None, min_length=1, max_length=8, pattern=r"^-?[0-9]{1,6}$")
    flag: RemediationFlag | None = None
    top: int = Field(default=50, ge=1, le=100)
    continuation_token: str | None = Field(default=None, min_length=1, max_length=2048)


class StateCount(ApiModel):
    state: str
    name: str
    count: int


class TicketTypeSummary(ApiModel):
    total: int
    states: list[StateCount]
    flags: FlagCounts


class TicketSummary(ApiModel):
    """GET /api/tickets/summary: the portal's two cards, keyed like the ticket types."""

    incident: TicketTypeSummary = Field(alias="incident")
    change_request: TicketTypeSummary = Field(alias="change_request")


TICKET_CREATE_QUEUE = "ticket-creates"  # creates ServiceNow has not confirmed; failures land in -poison


class PendingTicket(ApiModel):
    """The `creating` ticket row a `ticket-creates` message stands for: the worker writes it when the
    request that queued the message stopped before it did. No secret in it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    instance_url: str = Field(min_length=1, max_length=300)
    name: str = Field(max_length=1000)
    description: str = Field(max_length=20000)
    priority: int = Field(ge=1, le=5)
    due_date: date
    recommendation_source: RecommendationSource
    recommendation_category: RecommendationCategory
    improvement_action_id: str | None = Field(default=None, max_length=200)
    improvement_action_link: str | None = None
    created_by: str
    created_by_name: str
    created_at: AwareDatetime


class PendingCreate(ApiModel):
    """One message on the `ticket-creates` queue: finish the ticket whose create ServiceNow has not
    confirmed. Carries what the ServiceNow record receives (no secret: the token is fetched then),
    not the Idempotency-Key itself but its hash; `round` counts the messages sent for it.
    `client_id` is the connection's client when the ticket was made, `ticket` its row (both None
    in messages queued before they were carried)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    tenant_id: str = Field(min_length=1, max_length=100, pattern=r"^[0-9A-Za-z-]+$")
    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    ticket_id: str = Field(pattern=r"^[0-9]{13}[0-9a-f]{8}$")
    table: TicketType
    fields: dict[str, str] = Field(max_length=32)
    round: int = Field(default=0, ge=0, le=1000)
    client_id: str | None = Field(default=None, max_length=200)
    ticket: PendingTicket | None = None


# --- Sync -----------------------------------------------------------------------------------

SYNC_QUEUE = "sync-requests"  # the queue the timer fans out on; failures land in sync-requests-poison
SyncReason = Literal["timer", "manual"]


class SyncRequest(ApiModel):
    """One message on the `sync-requests` queue: sync this tenant's tokens and ticket states."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    tenant_id: str = Field(min_length=1, max_length=100, pattern=r"^[0-9A-Za-z-]+$")
    reason: SyncReason
    requested_at: AwareDatetime
    row: ListedRow | None = None  # the timer's: the row as it listed it (other senders: none)


SYNC_STATUS_URL = "/api/provisioning"


class SyncQueued(ApiModel):
    """POST /api/sync: the sync was queued (it runs shortly, on the queue worker); `statusUrl` and
    `message` say how to tell when it is done."""

    status: Literal["queued"] = "queued"
    requested_at: AwareDatetime
    status_url: str = SYNC_STATUS_URL
    message: str = (
        f"Poll GET {SYNC_STATUS_URL}: the sync is done when lastSyncStartedAt is at or after requestedAt "
        "and syncInProgress is false. A failed sync leaves lastSyncStartedAt as it was and sets lastError."
    )
