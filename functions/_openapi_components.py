"""The fixed parts of the OpenAPI document: the error body's schema, the description, security
schemes, shared parameters and headers, and how an operation's role is stated."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import GenerateJsonSchema

from shared.errors import Forbidden
from shared.identity import PRINCIPAL_HEADER, Caller, Role

REF = "#/components/schemas/{model}"
SCOPE = "api://{AUTH_CLIENT_ID}/.default"
BASE_URL = "https://<app>.azurewebsites.net"
EXAMPLE_REQUEST_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
ENTRA = "https://login.microsoftonline.com/organizations/oauth2/v2.0"
PATH_PARAMETER = re.compile(r"\{([^}]+)\}")


class SchemaGenerator(GenerateJsonSchema):
    """pydantic's schemas without the titles it makes up for fields (`Duedate`): the names say it."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


class FieldProblem(BaseModel):
    """One problem of a 400 `validation_error`: the body key or query parameter, in its wire spelling."""

    model_config = ConfigDict(extra="forbid")
    field: str
    message: str


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str
    requestId: str  # the wire name
    fields: list[FieldProblem] = []


class ErrorBody(BaseModel):
    """Every error: `requestId` is the answer's `X-Request-Id`; `fields` only on a 400."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


INFO_DESCRIPTION = """\
The back end of the ServiceNow ticketing connector: connect a tenant's ServiceNow instance, turn
Secure Score improvement actions into incidents and change requests, and follow their states.

**Sign-in.** In Azure, App Service Authentication (Easy Auth) stands in front of every route but the
anonymous ones: call with `Authorization: Bearer <token>` for `api://<AUTH_CLIENT_ID>` (schemes
`entraId` and `bearerToken`); Easy Auth hands the app the principal in `X-MS-CLIENT-PRINCIPAL`. On a
developer machine (`LOCAL_DEV=true`) send that header yourself (scheme `localPrincipal`). Each
operation names the app role it needs in `x-required-roles`.

**Errors.** Every error is `{"error": {"code", "message", "requestId", "fields"?}}`; `requestId` is
the `X-Request-Id` header every answer carries, and `fields` lists a 400's problems. Each operation
lists, per status, the codes it can answer.

**Behaviour** (idempotent creates, a ticket's `status`, the sync, CORS): the repository's README.
"""

SECURITY_SCHEMES: dict[str, Any] = {
    "entraId": {
        "type": "oauth2",
        "description": "Microsoft Entra ID through App Service Authentication (Azure). `organizations` "
        "serves any work or school tenant; the scope is the API app registration's "
        "(`AUTH_CLIENT_ID`).",
        "flows": {
            "authorizationCode": {
                "authorizationUrl": f"{ENTRA}/authorize",
                "tokenUrl": f"{ENTRA}/token",
                "scopes": {SCOPE: "Call the connector API with the app roles you hold."},
            }
        },
    },
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An Entra access token for `api://<AUTH_CLIENT_ID>` (Azure); Easy Auth checks it.",
    },
    "localPrincipal": {
        "type": "apiKey",
        "in": "header",
        "name": PRINCIPAL_HEADER.upper(),
        "description": "Base64 JSON of the Easy Auth principal (`claims` with `tid`, `oid`, `roles`). "
        "Trusted only with `LOCAL_DEV=true`: in Azure Easy Auth sets it, and a caller's own is refused.",
    },
}

COMPONENT_PARAMETERS: dict[str, Any] = {
    "Idempotency-Key": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "1-255 printable ASCII characters (a UUID is best). Retry with the same key and "
        "body: a repeat answers the same ticket and creates nothing. Without it, retries are not "
        "deduplicated.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
        "example": "2b1e3a4c-5d6f-4a7b-8c9d-0e1f2a3b4c5d",
    },
    "Origin": {
        "name": "Origin",
        "in": "header",
        "description": "The calling page's origin; allowed: the app's own and `CORS_ALLOWED_ORIGINS`.",
        "schema": {"type": "string"},
        "example": "https://portal.example.com",
    },
    "X-Connector-Timestamp": {
        "name": "X-Connector-Timestamp",
        "in": "header",
        "description": "Unix seconds when the push was signed; at most 5 minutes off.",
        "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
        "example": "1736933400",
    },
    "X-Connector-Signature": {
        "name": "X-Connector-Signature",
        "in": "header",
        "description": 'Base64 of HMAC-SHA256(key, timestamp + "." + raw body).',
        "schema": {"type": "string"},
        "example": "<Base64 HMAC-SHA256>",
    },
    "Access-Control-Request-Method": {
        "name": "Access-Control-Request-Method",
        "in": "header",
        "schema": {"type": "string"},
        "example": "POST",
    },
    "Access-Control-Request-Headers": {
        "name": "Access-Control-Request-Headers",
        "in": "header",
        "schema": {"type": "string"},
        "example": "content-type,idempotency-key",
    },
}


def _header(description: str, required: bool = False, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema or {"type": "string"}}


COMPONENT_HEADERS: dict[str, Any] = {
    "X-Request-Id": _header("The request's id, as in the log lines and an error's `requestId`.", True),
    "Location": _header("A ticket's URL (`/api/tickets/<id>`); from the OAuth callback, the portal's.", True),
    "Retry-After": _header(
        "Seconds to wait before retrying (`upstream_unavailable`, `idempotency_key_in_progress`, `rate_limited`).",
        schema={"type": "integer", "minimum": 1},
    ),
    "Cache-Control": _header(
        "`no-store`: the request URL carried an authorization code, or the answer a key.", True
    ),
    "Allow": _header("The methods of the API, on an `OPTIONS` without `Origin`."),
    "Access-Control-Allow-Origin": _header("The allowed origin that asked."),
    "Access-Control-Allow-Methods": _header("`GET, POST, PUT, DELETE`."),
    "Access-Control-Allow-Headers": _header("What a page may send (the local principal header locally)."),
    "Access-Control-Max-Age": _header("How long a browser may reuse the answer, in seconds."),
}


def role_text(role: Role | None) -> str:
    if role is None:
        return "**Anonymous**: no sign-in needed."
    holders = [held for held in Role if _grants(held, role)]
    also = [f"`{held.value}`" for held in holders if held != role]
    return (
        f"**Role:** `{role.value}`" + (f" (or {' or '.join(also)}, which include it)" if also else "") + ". "
        "Without a principal: 401 `unauthenticated`; without the role: 403 `forbidden`."
    )


def _grants(held: Role, needed: Role) -> bool:
    try:
        Caller(tenant_id="", user_id="", name="", roles=frozenset({held})).require(needed)
    except Forbidden:
        return False
    return True


def security_of(role: Role | None) -> list[dict[str, list[str]]]:
    if role is None:
        return []
    return [{"entraId": [SCOPE]}, {"bearerToken": []}, {"localPrincipal": []}]
