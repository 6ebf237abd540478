"""What the OpenAPI document says of push from ServiceNow (merged into `_contract.OPERATIONS`)."""

from __future__ import annotations

from datetime import UTC, datetime

from functions._contract_types import Answer, Operation, PathParameter
from shared.errors import (
    BadRequest,
    Conflict,
    ConnectionNotReady,
    Forbidden,
    ForbiddenOrigin,
    Misconfigured,
    PayloadTooLarge,
    TooManyRequests,
    Unauthenticated,
    UnsupportedMediaType,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.push_models import PushAccepted, PushRotated, PushSetup, PushStatus, key_property
from shared.services.push_setup import INSTRUCTIONS, TABLES, business_rule

_PROTECTED = (Unauthenticated, Forbidden, Conflict, Misconfigured, UpstreamUnavailable)
_HOOK_ID = "Yq0d3n8WvJ4kP2sT6xZ1bC9mR5aF7hL0eU3iO8wQ2gE"
_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
_URL = f"https://contoso-connector.azurewebsites.net/api/servicenow/hooks/{_HOOK_ID}"
_STATUS = PushStatus(enabled=True, last_push_at=datetime(2025, 1, 15, 9, 30, tzinfo=UTC), pushes_last_24h=42)
_SETUP = PushSetup(
    enabled=True,
    hook_url=_URL,
    key_property=key_property(_TENANT),
    business_rules=[business_rule(_TENANT, table, _URL) for table in TABLES],
    instructions=INSTRUCTIONS.format(property=key_property(_TENANT)),
    status=_STATUS,
)
_ROTATED = PushRotated(**_SETUP.model_dump(), key="q83vEjRWeJCe7P6cVUgbzjRvcX2mYl0fM0XVB2VVeEE=")
_HINT = {
    "table": "incident",
    "sys_id": "9d385017c611228701d22104cc95c371",
    "sys_mod_count": 4,
    "sys_updated_on": "2025-01-15 09:30:00",
}

PUSH_OPERATIONS: dict[str, Operation] = {
    "servicenow_push_hook": Operation(
        summary="A push from ServiceNow's Business Rule",
        description="Called by the Business Rules `GET /api/provisioning/push` gives, never by a person. "
        "`hookId` is random per connection and rotatable. Signed: `X-Connector-Timestamp` (Unix seconds, at "
        'most 5 minutes off) and `X-Connector-Signature`, Base64 of HMAC-SHA256(key, timestamp + "." + raw '
        "body). An unknown hook, a missing or wrong signature and a stale timestamp are all the same 401. "
        "The body is one object or an array of at most 100, each exactly `table` (`incident` or "
        "`change_request`), `sys_id`, `sys_mod_count` and `sys_updated_on`; it is read only after the "
        "signature checks. A push is a hint: the records are read from ServiceNow and applied when newer, "
        "shortly after the 202; the poll stays the source of truth. Rate-limited per hook and instance "
        "(429 with `Retry-After`).",
        tag="Push",
        answers=(Answer(202, "The hints were queued.", PushAccepted, PushAccepted(accepted=1)),),
        errors=(
            Unauthenticated,
            TooManyRequests,
            BadRequest,
            PayloadTooLarge,
            ForbiddenOrigin,
            UnsupportedMediaType,
            UpstreamUnavailable,
        ),
        body_examples={"one record": _HINT, "several": [_HINT]},
        path={"hookId": PathParameter("The hook's id, as in the hook URL.", _HOOK_ID)},
        request_headers=("X-Connector-Timestamp", "X-Connector-Signature"),
    ),
    "provisioning_push": Operation(
        summary="Push from ServiceNow: the hook URL and Business Rules",
        description="What an admin installs in ServiceNow so that state changes reach the portal within "
        "seconds: the system property to create (`keyProperty`, holding the key of the last rotate), and "
        "one async Business Rule per table (`businessRules`: table, condition, script). Push is off "
        "(`enabled: false`, no URL, no rules) until the first rotate. `status` tells when the last valid "
        "push arrived and how many arrived in the last 24 hours. The key is never in this answer.",
        tag="Provisioning",
        answers=(Answer(200, "The setup.", PushSetup, _SETUP),),
        errors=(*_PROTECTED, ConnectionNotReady),
    ),
    "provisioning_push_rotate": Operation(
        summary="Push from ServiceNow: a new hook URL and key",
        description="Turns push on, or replaces its hook id and key: the old URL and key stop working at "
        "once. The answer is the setup plus `key` (32 bytes, Base64, as ServiceNow's "
        "`CertificateEncryption.generateMac` takes it), shown this once: paste it into the system property "
        "`keyProperty` and update both Business Rules' scripts.",
        tag="Provisioning",
        answers=(
            Answer(
                200,
                "Rotated; the key is in this answer only.",
                PushRotated,
                _ROTATED,
                headers=("Cache-Control",),
            ),
        ),
        errors=(*_PROTECTED, ForbiddenOrigin, UnsupportedMediaType, ConnectionNotReady, UpstreamError),
    ),
}
