"""What we store: table rows (PascalCase properties) and the Key Vault token set, and the small
value types the services and the stores exchange about them (ticket ids, sync entries).

No secret value is ever a field of a table row: the client secret and tokens live in Key Vault.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, field_serializer
from pydantic.alias_generators import to_pascal

from shared.errors import ConnectionNotReady, ReauthorizationRequired
from shared.models import (
    ConnectionStatus,
    RecommendationCategory,
    RecommendationSource,
    StateNames,
    TicketStatus,
    TicketType,
)
from shared.remediation import RemediationStatus

IdempotencyStatus = Literal["in_progress", "completed"]
GrantKey = tuple[str, str, str, datetime | None]  # tenant, instance URL, client id, authorized at
# What the connector's records carry as `correlation_display` in ServiceNow: the sync lists only those.
CORRELATION_DISPLAY = "Microsoft 365 Security Connector"
# ServiceNow does not extend a refresh token when it is used: warn this long before it dies.
REFRESH_TOKEN_WARNING = timedelta(days=14)


# --- Key Vault ----------------------------------------------------------------------------


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
    # The grant the tokens were issued for (`Connection.grant` less the tenant): a connection read
    # before a re-authorization or re-pointing must not be handed the next grant's tokens, nor
    # send its refresh token to the old instance. None in sets stored before this was recorded.
    instance_url: str | None = None
    client_id: str | None = None
    authorized_at: AwareDatetime | None = None

    def for_grant(self, connection: Connection) -> TokenSet:
        """These tokens, marked as issued for the connection's current grant."""
        update = {
            "instance_url": connection.instance_url,
            "client_id": connection.client_id,
            "authorized_at": connection.connected_at,
        }
        return self.model_copy(update=update)

    def belongs_to(self, connection: Connection) -> bool:
        if self.instance_url is None:
            return True  # stored before grants were recorded: nothing to compare
        mine = (self.instance_url, self.client_id, self.authorized_at)
        return mine == (connection.instance_url, connection.client_id, connection.connected_at)


class StoredRecord(BaseModel):
    """A table row. Property names are PascalCase, as Table Storage tooling shows them."""

    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="ignore")

    etag: str | None = Field(default=None, exclude=True)


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
    # Sync bookkeeping: until when one worker owns this tenant's sync (so two messages for
    # the same tenant never pull and write at once), and when every ticket was last reconciled.
    sync_lease_until: AwareDatetime | None = None
    last_reconciled_at: AwareDatetime | None = None
    # When the last successful sync started (before it queried ServiceNow): a sync request made
    # before then is covered by that run. `last_sync_at` is when it ended.
    last_sync_started_at: AwareDatetime | None = None
    # ServiceNow asked us (Retry-After) to stay away until then: the timer does not queue the tenant
    # and the worker drops its messages until that time.
    sync_not_before: AwareDatetime | None = None
    # Secure Score: whether tickets' states are written back to their controls (off unless the
    # admin turns it on; needs SecurityEvents.ReadWrite.All), when the daily check last ran, and
    # until when Graph asked (429, Retry-After) to be left alone for this tenant.
    secure_score_write_back: bool = False
    # Whether the daily check adds one work note to a ticket's record when Secure Score shows the
    # action done while the ticket is open (off unless the admin turns it on).
    remediation_work_notes: bool = False
    remediation_checked_at: AwareDatetime | None = None
    graph_not_before: AwareDatetime | None = None
    updated_at: AwareDatetime

    @property
    def grant(self) -> GrantKey:
        """Which authorization this row speaks for: another instance, client or a re-authorization
        (a new `connected_at`) is another grant, whose tokens are not this one's."""
        return (self.tenant_id, self.instance_url, self.client_id, self.connected_at)

    def is_same_live_grant(self, other: Connection) -> bool:
        """Still connected through the grant `other` was read with: no re-authorization,
        reconfiguration or dead grant recorded since (a write based on `other` is then stale)."""
        return self.status == ConnectionStatus.CONNECTED and self.grant == other.grant


def usable_connection(connection: Connection | None) -> Connection:
    """The connection, if ServiceNow can be called through it now.

    Raises:
        ConnectionNotReady: none, not configured, or its authorization not completed yet.
        ReauthorizationRequired: its grant is dead; an admin must authorize again.
    """
    if connection is None or connection.status in (
        ConnectionStatus.NOT_CONFIGURED,
        ConnectionStatus.PENDING_AUTHORIZATION,
    ):
        raise ConnectionNotReady()
    if connection.status == ConnectionStatus.REAUTHORIZATION_REQUIRED:
        raise ReauthorizationRequired()
    return connection


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


class Ticket(StoredRecord):
    """A ticket we created (`tickets` table, PK tenant id, RK ticket id: newest first).

    `instance_url` is the instance the record lives in, so its link stays right after the tenant
    connects another instance. `state` is ServiceNow's code; the sync moves it.
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
    # The link the record's description gives for the action (Graph's at the time of the create), so
    # a create that finishes a `creating` row sends what the first one did. None on older rows.
    improvement_action_link: str | None = None
    created_by: str
    created_by_name: str
    created_at: AwareDatetime
    state: str
    state_updated_at: AwareDatetime
    servicenow_updated_on: str | None = None
    servicenow_mod_count: int | None = None  # sys_mod_count of the version `state` is from
    # The timeline's `created` event is this row itself, so a create stays one write: the request
    # that asked for it, and the state ServiceNow made the record in (`state` moves with the sync;
    # this does not). None on rows older than the timeline. Set by `with_created_event`.
    request_id: str | None = None
    created_state: str | None = None

    @field_serializer("due_date")
    def _due_date_as_text(self, value: date) -> str:
        return value.isoformat()  # Table Storage has no date type (only date-times)

    # Set by the sync when the record no longer exists in ServiceNow: `state` then keeps
    # the last state seen, and the portal shows the ticket as deleted rather than as that state.
    deleted_in_servicenow_at: AwareDatetime | None = None
    # `creating`: written before ServiceNow confirmed the record (no sys_id, number or state yet;
    # the sync passes it by), finished by the `ticket-creates` worker. Rows older than this column
    # have none, and are records ServiceNow made: `created`.
    status: TicketStatus = "created"
    failure_reason: str | None = None  # why a `failed` ticket was not made, in words
    # The daily Secure Score check of the ticket's improvement action (`remediation.py`); None
    # before the first check. `closed_at`: when the check first saw the ticket closed (the state
    # change's time as the sync stored it), None while it is open.
    remediation_status: RemediationStatus | None = None
    remediation_score: float | None = None
    remediation_max_score: float | None = None
    remediation_checked_at: AwareDatetime | None = None
    remediation_completed_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    closed_without_remediation: bool = False
    remediated_while_open: bool = False
    regressed: bool = False
    # Write-back to Secure Score: the comment last written on the control, when, and the last
    # error (kept until a write-back succeeds; the next check tries again).
    write_back_comment: str | None = None
    write_back_at: AwareDatetime | None = None
    write_back_error: str | None = None
    # The work note saying the action looks done (`remediation_work_notes`): `sending` is written
    # before the PATCH and `sent` after it, so a note is never sent twice blindly; when, too.
    work_note_state: Literal["sending", "sent"] | None = None
    work_note_at: AwareDatetime | None = None


class IdempotencyRecord(StoredRecord):
    """A claimed Idempotency-Key (`idempotency` table, PK tenant id, RK sha256 hex of the key).

    The ticket id is chosen before ServiceNow is called, so whoever finishes an interrupted create
    can find the record by `correlation_id`. `lease_until` says until when the current attempt
    owns the create; None or past means whoever holds the same request may take it over.
    `posted_at` is when the latest create that ServiceNow may have carried out was sent, or may
    yet be sent: a new claim is written with it (its holder posts within
    `TicketingPolicy.post_grace`, so it needs no second write before its POST); any later POST
    writes it (with the lease) immediately before leaving; it is put back when ServiceNow
    certainly did not process that one. Until it is older than the settle window no other request
    sends a create. `deferred`: the create did not end in its request (the claim was kept after a
    failure, or the ticket went `creating`): the timer's sweep watches such claims for lost
    `ticket-creates` messages until they are completed. A claim is the ticket's until
    `TicketingPolicy.claim_retention` after `created_at`, then deleted: the key is new again.
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
    deferred: bool = False


@dataclass(frozen=True)
class AppKey:
    """An app-wide random key kept in Key Vault (not a tenant's), at one version."""

    version: str
    value: SecretStr


# --- Ticket ids -------------------------------------------------------------------------------------

_MAX_MS = 10**13 - 1  # inverted timestamps stay 13 digits until the year 2286
TICKET_ID = re.compile(r"^[0-9]{13}[0-9a-f]{8}$")


def new_ticket_id(now: datetime | None = None) -> str:
    """A ticket id that sorts before every earlier one: 13-digit inverted epoch ms + 8 hex.

    21 characters, fits ServiceNow's 100-character `correlation_id`, safe in a URL and a RowKey.
    """
    millis = int((now.timestamp() if now is not None else time.time()) * 1000)
    return f"{_MAX_MS - millis:013d}{secrets.token_hex(4)}"


# --- What the sync reads and writes -----------------------------------------------------------------


@dataclass(frozen=True)
class TicketSyncEntry:
    """What the sync needs to know about one of our tickets (a few columns, not the whole row)."""

    ticket_id: str
    type: str
    sys_id: str
    state: str
    created_at: datetime | None
    deleted: bool


@dataclass(frozen=True)
class TicketStateChange:
    """A ticket's new ServiceNow state, as the sync observed it."""

    ticket_id: str
    state: str
    state_updated_at: datetime
    servicenow_updated_on: str | None = None  # ServiceNow's sys_updated_on, kept for the watermark
    mod_count: int | None = None  # ServiceNow's sys_mod_count: which version of the record this is
    seen_at: datetime | None = None  # when we listed it (the timeline's poll time)


@dataclass(frozen=True)
class StateChangeResult:
    applied: int
    missing: tuple[str, ...]  # ticket ids with no row (never created here, or another tenant's)


@dataclass(frozen=True)
class ActionTicket:
    """What an improvement action's listing shows of a ticket made for it."""

    ticket_id: str
    type: TicketType
    number: str
    sys_id: str
    instance_url: str
    state: str
    status: TicketStatus
    deleted: bool = False  # the record is gone from ServiceNow (`deleted_in_servicenow_at`)


def with_created_event(ticket: Ticket, request_id: str | None) -> Ticket:
    """`ticket` as it is to be written, with its `created` event: the request id (at its insert)
    and the state ServiceNow answered once the ticket is `created` (either is kept once set)."""
    update: dict[str, str] = {}
    if ticket.request_id is None and request_id:
        update["request_id"] = request_id
    if ticket.created_state is None and ticket.status == "created":
        update["created_state"] = ticket.state
    return ticket.model_copy(update=update) if update else ticket
