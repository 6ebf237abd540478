"""`PATCH /v1.0/security/secureScoreControlProfiles/{id}`: what Graph accepts, and the
`controlStateUpdates` entry each accepted update appends.

From the Graph reference page of the update: the writable fields are `assignedTo`, `comment` and
`state` (`Default`, `Ignored`, `ThirdParty`, `Reviewed`); the body must carry `vendorInformation`
with `provider` and `vendor`; fields left out keep their value; the answer is 204, or 200 with the
profile under `Prefer: return=representation`. Device controls (`scid_…`) belong to Defender
Vulnerability Management and are refused. Graph does not document its error answers for any of
these, so each refusal here is a 400 `BadRequest` in Graph's error envelope.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from localdev.entra.secure_score import VENDOR

STATES = ("Default", "Ignored", "ThirdParty", "Reviewed")
WRITABLE = ("assignedTo", "comment", "state")
DEVICE_CONTROL_PREFIX = "scid_"
PROFILE_TYPE = "microsoft.graph.secureScoreControlProfile"
# Read-only properties of the profile: a body naming one is refused rather than silently ignored.
READ_ONLY = frozenset(
    {
        "id",
        "azureTenantId",
        "actionType",
        "actionUrl",
        "controlCategory",
        "title",
        "deprecated",
        "implementationCost",
        "lastModifiedDateTime",
        "maxScore",
        "rank",
        "remediation",
        "remediationImpact",
        "service",
        "threats",
        "tier",
        "userImpact",
        "complianceInformation",
        "controlStateUpdates",
    }
)
FIRST_STATE = {"assignedTo": "", "comment": "", "state": "Default"}


def refusal(body: object) -> str | None:
    """Why Graph refuses this PATCH body, or None when it is accepted."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    for name, value in body.items():
        if name.startswith("@odata."):
            continue  # OData annotations are allowed on any entity
        if name in READ_ONLY:
            return f"Property '{name}' of '{PROFILE_TYPE}' is read-only."
        if name not in (*WRITABLE, "vendorInformation"):
            return (
                f"The property '{name}' does not exist on type '{PROFILE_TYPE}'. Make sure to only use "
                "property names that are defined by the type."
            )
        if name in WRITABLE and not isinstance(value, str):
            return f"Property '{name}' must be a string."
    if "state" in body and body["state"] not in STATES:
        return f"Invalid state '{str(body['state'])[:50]}'. Possible values are: {', '.join(STATES)}."
    return _vendor_refusal(body.get("vendorInformation"))


def _vendor_refusal(vendor: object) -> str | None:
    required = "vendorInformation with provider and vendor is required."
    if not isinstance(vendor, dict):
        return required
    for name in ("provider", "vendor"):
        value = vendor.get(name)
        if not isinstance(value, str) or not value.strip():
            return required
        if value.strip().lower() != str(VENDOR[name]).lower():
            return f"Invalid vendorInformation {name} '{value[:50]}'; expected '{VENDOR[name]}'."
    return None


def device_control_refusal(control_id: str) -> str | None:
    if control_id.startswith(DEVICE_CONTROL_PREFIX):
        return (
            f"Control '{control_id[:100]}' is managed in Microsoft Defender Vulnerability Management "
            "and cannot be updated through this API."
        )
    return None


def next_update(
    latest: dict[str, Any] | None, changes: dict[str, Any], updated_by: str, now: datetime
) -> dict[str, Any]:
    """The `controlStateUpdates` entry a change appends: what it leaves out keeps its latest value."""
    base = latest or FIRST_STATE
    entry = {name: changes.get(name, base.get(name, FIRST_STATE[name])) for name in WRITABLE}
    return {**entry, "updatedBy": updated_by, "updatedDateTime": graph_timestamp(now)}


def graph_timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prefers_representation(prefer: str) -> bool:
    """Whether a `Prefer` header asks for the updated entity (`return=representation`)."""
    return any(part.strip().lower() == "return=representation" for part in prefer.split(","))
