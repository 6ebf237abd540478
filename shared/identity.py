"""Who is calling: the App Service Authentication (Easy Auth) principal.

Easy Auth validates the user's Entra token in front of the app and passes the result in the
`X-MS-CLIENT-PRINCIPAL` header (base64 JSON). The header is only as trustworthy as the platform
that sets it, so it is honoured only when Easy Auth is on (`WEBSITE_AUTH_ENABLED=True`) or on a
developer's machine (`LOCAL_DEV=true`). Anywhere else a caller could forge it, so every protected
call is refused.

`Connector.Operator` (the fleet view of every tenant's connection) is the one role that is not the
caller's tenant's business alone: it is honoured only for a user of the operator's own tenant
(`OPERATOR_TENANT_ID`), and dropped here, while the principal is read, for anyone else. A
customer's `Connector.Admin` does not include it, and it includes no other role.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.errors import Forbidden, Unauthenticated
from shared.settings import get_settings
from shared.untrusted import decode_json

PRINCIPAL_HEADER = "x-ms-client-principal"
SECURITY_ADMINISTRATOR_TEMPLATE_ID = "194ae4cb-b126-40b2-bd5b-6091b380977d"
# Far above a real principal (its claims, groups included, come from a token of a few KB).
MAX_PRINCIPAL_BYTES = 64 * 1024

_TENANT_CLAIMS = ("http://schemas.microsoft.com/identity/claims/tenantid", "tid")
_OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_NAME_CLAIMS = ("name", "preferred_username", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name")

logger = logging.getLogger(__name__)
_untrusted_warning_logged = False


class Role(StrEnum):
    ADMIN = "Connector.Admin"
    READ_WRITE = "Tickets.ReadWrite"
    READ = "Tickets.Read"
    OPERATOR = "Connector.Operator"


# A tenant's roles: what each grants within the caller's own tenant.
TENANT_ROLES = frozenset({Role.ADMIN, Role.READ_WRITE, Role.READ})
_GRANTS: dict[Role, frozenset[Role]] = {
    Role.ADMIN: TENANT_ROLES,
    Role.READ_WRITE: frozenset({Role.READ_WRITE, Role.READ}),
    Role.READ: frozenset({Role.READ}),
    Role.OPERATOR: frozenset({Role.OPERATOR}),
}


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    user_id: str
    name: str
    roles: frozenset[Role]

    def require(self, role: Role) -> None:
        if not any(role in _GRANTS[held] for held in self.roles):
            raise Forbidden(f"This operation needs the {role.value} role.")


def configured_operator_tenant() -> str | None:
    """The tenant whose users' Connector.Operator role counts (`OPERATOR_TENANT_ID`), or None."""
    return get_settings().operator_tenant_id


def caller_from_headers(
    headers: Mapping[str, str],
    *,
    trusted: bool,
    operator_tenant: Callable[[], str | None] = configured_operator_tenant,
) -> Caller:
    """Parse the principal header into a Caller. `operator_tenant` is asked only when the principal
    claims Connector.Operator, so the settings are read for those callers alone.

    Raises:
        Unauthenticated: no principal, an unusable one, or a header we must not trust here.
    """
    if not trusted:
        _log_untrusted_once()
        raise Unauthenticated("Authentication is not configured for this app.")
    raw = _header(headers, PRINCIPAL_HEADER)
    if not raw:
        raise Unauthenticated()
    principal = _decode(raw)
    claims = _claims(principal)
    tenant_id = _first_guid(claims, _TENANT_CLAIMS)
    user_id = _first_guid(claims, _OBJECT_ID_CLAIMS)
    if tenant_id is None or user_id is None:
        raise Unauthenticated("The signed-in principal has no tenant or object id.")
    role_typ = str(principal.get("role_typ") or "roles")
    name_typ = str(principal.get("name_typ") or "name")
    roles = _roles(claims, role_typ)
    if Role.OPERATOR in roles and tenant_id != operator_tenant():
        roles -= {Role.OPERATOR}
    return Caller(
        tenant_id=tenant_id,
        user_id=user_id,
        name=_first(claims, (name_typ, *_NAME_CLAIMS)) or user_id,
        roles=roles,
    )


def _log_untrusted_once() -> None:
    global _untrusted_warning_logged
    if not _untrusted_warning_logged:
        _untrusted_warning_logged = True
        logger.warning(
            "Refusing every protected call: the %s header is trusted only when App Service "
            "Authentication is enabled (WEBSITE_AUTH_ENABLED=True) or LOCAL_DEV=true, and neither is set.",
            PRINCIPAL_HEADER,
        )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _decode(raw: str) -> dict[str, Any]:
    try:
        padded = raw.strip() + "=" * (-len(raw.strip()) % 4)
        decoded = decode_json(base64.b64decode(padded, validate=False), max_bytes=MAX_PRINCIPAL_BYTES)
    except (binascii.Error, ValueError) as exc:
        raise Unauthenticated("The principal header is not valid base64 JSON.") from exc
    if not isinstance(decoded, dict):
        raise Unauthenticated("The principal header is not valid base64 JSON.")
    return decoded


def _claims(principal: Mapping[str, Any]) -> list[tuple[str, str]]:
    claims = principal.get("claims")
    if not isinstance(claims, list):
        raise Unauthenticated("The principal header carries no claims.")
    return [
        (str(c["typ"]), str(c["val"])) for c in claims if isinstance(c, dict) and "typ" in c and "val" in c
    ]


def _first(claims: list[tuple[str, str]], types: tuple[str, ...]) -> str | None:
    for wanted in types:
        for typ, val in claims:
            if typ == wanted and val:
                return val
    return None


def _first_guid(claims: list[tuple[str, str]], types: tuple[str, ...]) -> str | None:
    value = _first(claims, types)
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _roles(claims: list[tuple[str, str]], role_typ: str) -> frozenset[Role]:
    role_types = {role_typ, *_ROLE_CLAIMS}
    known = {role.value: role for role in Role}
    roles = {known[val] for typ, val in claims if typ in role_types and val in known}
    if any(typ == "wids" and val.lower() == SECURITY_ADMINISTRATOR_TEMPLATE_ID for typ, val in claims):
        roles.add(Role.ADMIN)
    return frozenset(roles)


def encode_principal(
    tenant_id: str, user_id: str, roles: list[str], *, name: str = "", wids: list[str] | None = None
) -> str:
    """Build a principal header the way Easy Auth does, for tests and for a developer calling the
    local host by hand (README, "Who may call what"); the app itself only ever decodes one."""
    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": tenant_id},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": user_id},
        {"typ": "name", "val": name or user_id},
        *({"typ": "roles", "val": role} for role in roles),
        *({"typ": "wids", "val": wid} for wid in wids or []),
    ]
    principal = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(principal).encode()).decode()
