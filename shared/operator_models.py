"""Pydantic bodies of the operator's fleet view (`GET /api/operator/connections`), camelCase.

What the operator sees of each tenant's connection is its health, read from the connection row
alone: no secret (the row holds none) and nothing of the tenant's tickets. Nothing here comes
from Key Vault: the token expiries are the ones the row records when tokens are issued.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from shared.models import ApiModel, ConnectionStatus
from shared.push_models import PushStatus

# `paused`: ServiceNow asked us to stay away (Retry-After) until `syncPausedUntil`; `failed`: an
# error is recorded since the last successful sync or authorization (`lastError`); `succeeded`:
# the last sync succeeded and nothing failed since; `never`: no sync has run, and nothing failed.
SyncOutcome = Literal["succeeded", "failed", "paused", "never"]


class FleetQuery(ApiModel):
    """GET /api/operator/connections query parameters."""

    status: ConnectionStatus | None = None
    top: int = Field(default=50, ge=1, le=100)
    continuation_token: str | None = Field(default=None, min_length=1, max_length=2048)


class FleetConnection(ApiModel):
    """One tenant's connection, as the operator sees it."""

    tenant_id: str
    status: ConnectionStatus
    instance: str
    instance_url: str
    connected_at: AwareDatetime | None = None
    access_token_expires_at: AwareDatetime | None = None
    refresh_token_expires_at: AwareDatetime | None = None
    refresh_token_expires_soon: bool = False
    last_sync_at: AwareDatetime | None = None
    last_sync_started_at: AwareDatetime | None = None
    last_sync_outcome: SyncOutcome = "never"
    sync_in_progress: bool = False
    sync_paused_until: AwareDatetime | None = None
    last_error: str | None = None
    updated_at: AwareDatetime
    push: PushStatus | None = None  # None when the view was built without push


class FleetPage(ApiModel):
    items: list[FleetConnection]
    continuation_token: str | None = None
