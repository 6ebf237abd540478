"""Push from ServiceNow: the hook's body, the queue message, the admin's setup answers.

A push is a hint that a record of ours changed. ServiceNow's async Business Rules call out at
most once, possibly out of order, possibly never; the polling sync stays the source of truth, so
nothing here carries a state: the worker reads the records themselves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel
from pydantic.alias_generators import to_camel

PUSH_QUEUE = "push-hints"  # the hook's hints for the worker; failures land in push-hints-poison
MAX_HINTS = 100  # per call: one Business Rule sends one, a replay tool may batch
MAX_PUSH_BODY_BYTES = 32 * 1024  # 100 hints of about 150 bytes, with room to spare
SIGNATURE_HEADER = "X-Connector-Signature"
TIMESTAMP_HEADER = "X-Connector-Timestamp"
# The system property the admin creates, one per tenant (`key_property`): tenants that share an
# instance each install their own rules and key, and none overwrites another's.
KEY_PROPERTY = "x_m365_connector.push_hmac_key"
HOOK_ID_PATTERN = r"^[A-Za-z0-9_-]{43}$"  # token_urlsafe(32)
PushTable = Literal["incident", "change_request"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PushHint(_Body):
    """One changed record, as the Business Rule names it (ServiceNow's own field names)."""

    table: PushTable
    sys_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    sys_mod_count: int = Field(ge=0, le=2**31)
    sys_updated_on: str = Field(pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


HintList = Annotated[list[PushHint], Field(min_length=1, max_length=MAX_HINTS)]


class PushBody(RootModel[PushHint | HintList]):
    """What the hook accepts: one hint or a non-empty array of at most `MAX_HINTS`."""

    def hints(self) -> list[PushHint]:
        root = self.root
        return list(root) if isinstance(root, list) else [root]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class PushHintMessage(_Camel):
    """One message on the `push-hints` queue: one authenticated call's hints. No secret in it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    tenant_id: str = Field(min_length=1, max_length=100, pattern=r"^[0-9A-Za-z-]+$")
    hints: list[PushHint] = Field(min_length=1, max_length=MAX_HINTS)
    received_at: AwareDatetime


class PushStatus(_Camel):
    """The push part of `GET /api/provisioning`: on or off, and what arrived lately."""

    enabled: bool = False
    last_push_at: AwareDatetime | None = None
    pushes_last_24h: int = Field(default=0, alias="pushesLast24h")


class BusinessRule(_Camel):
    """One Business Rule to create in ServiceNow (System Definition > Business Rules)."""

    name: str
    table: PushTable
    when: Literal["async"] = "async"
    insert: bool = True
    update: bool = True
    condition: str
    script: str


class PushSetup(_Camel):
    """`GET /api/provisioning/push`: what an admin installs in ServiceNow. The key is never here."""

    enabled: bool
    hook_url: str | None = None
    key_property: str
    signature_header: str = SIGNATURE_HEADER
    timestamp_header: str = TIMESTAMP_HEADER
    business_rules: list[BusinessRule] = Field(default_factory=list)
    instructions: str
    status: PushStatus


class PushRotated(PushSetup):
    """`POST /api/provisioning/push/rotate`: the setup with the new key, shown this once (Base64,
    as `CertificateEncryption.generateMac` takes it)."""

    key: str


@dataclass(frozen=True)
class PushHook:
    """Where a hook id leads: the tenant and the Key Vault version of the key that signs for it."""

    hook_id: str
    tenant_id: str
    key_version: str


@dataclass(frozen=True)
class PushTenant:
    """A tenant's push row: its current hook (None until the first rotate) and the counts."""

    tenant_id: str
    hook_id: str | None = None
    key_version: str | None = None
    last_push_at: datetime | None = None
    hourly: dict[str, int] | None = None  # "YYYYMMDDHH" (UTC) -> pushes received that hour


class PushAccepted(_Camel):
    """`POST /api/servicenow/hooks/{hookId}`: the hints were queued (202); `accepted` counts them."""

    accepted: int


def tenant_suffix(tenant_id: str) -> str:
    """Eight hex characters naming the tenant in ServiceNow (its property and rules) without
    spelling its id."""
    return hashlib.sha256(tenant_id.lower().encode("ascii")).hexdigest()[:8]


def key_property(tenant_id: str) -> str:
    return f"{KEY_PROPERTY}_{tenant_suffix(tenant_id)}"
