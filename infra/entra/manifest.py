"""The Entra app registration the connector needs, as the Microsoft Graph `application` body that
infra/entra/setup.sh PATCHes (create or update: the same body every run).

What it holds, and what reads it:
- app roles `Connector.Admin`, `Tickets.ReadWrite`, `Tickets.Read`, `Connector.Operator`
  (shared/identity.py `Role`); each id is a UUIDv5 of a fixed namespace and the role's value, so
  every run, on every machine, asks for the same ids, and an id already in the registration for a
  value is kept (assignments made to it survive);
- the delegated scope `user_impersonation` under `api://<client id>`, which the portal requests
  and Easy Auth accepts (infra/app/function.bicep `allowedAudiences`);
- `groupMembershipClaims: DirectoryRole`, which puts the signed-in user's directory roles in the
  token as `wids`: shared/identity.py treats the Security Administrator role
  (`SECURITY_ADMINISTRATOR_TEMPLATE_ID`) as Connector.Admin, and sees it only through that claim;
- Microsoft Graph application permissions for Secure Score: SecurityEvents.Read.All, and
  SecurityEvents.ReadWrite.All only for the write-back (`--write-back`);
- multi-tenant sign-in, v2 access tokens, and with `--app-host` the Easy Auth sign-in redirect.

Standard library only: setup.sh runs it with any python3, before the project's venv exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:servicenow-ticketing-connector:entra-app-registration")
MICROSOFT_GRAPH = "00000003-0000-0000-c000-000000000000"
# Microsoft Graph application permission (app role) ids, the same in every tenant.
SECURITY_EVENTS_READ_ALL = "bf394140-e372-4bf9-a898-299cfc7564e5"
SECURITY_EVENTS_READWRITE_ALL = "d903a879-88e0-4c09-b0c9-82f6a1333f84"
SCOPE = "user_impersonation"

# value -> (display name, description): who holds each and what it allows.
ROLES: dict[str, tuple[str, str]] = {
    "Connector.Admin": (
        "Connector administrator",
        "Connect, re-authorize and remove the tenant's ServiceNow connection; create and read tickets.",
    ),
    "Tickets.ReadWrite": (
        "Ticket writer",
        "Create ServiceNow tickets from improvement actions and read them.",
    ),
    "Tickets.Read": ("Ticket reader", "Read the tenant's ServiceNow tickets and their states."),
    "Connector.Operator": (
        "Connector operator",
        "See every tenant's connection health (fleet view). Honoured only for users of the operator's "
        "own tenant (OPERATOR_TENANT_ID); assign it there, never in a customer tenant.",
    ),
}


def stable_id(kind: str, value: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{value}"))


def _existing_ids(current: dict[str, Any], key: str) -> dict[str, str]:
    """value -> id of what the registration already declares (appRoles, or the API's scopes)."""
    items = current.get(key) if key == "appRoles" else current.get("api", {}).get(key)
    return {item["value"]: item["id"] for item in items or [] if item.get("value") and item.get("id")}


def app_roles(current: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    existing = _existing_ids(current or {}, "appRoles")
    return [
        {
            "id": existing.get(value, stable_id("role", value)),
            "value": value,
            "displayName": name,
            "description": description,
            "allowedMemberTypes": ["User"],
            "isEnabled": True,
        }
        for value, (name, description) in ROLES.items()
    ]


def scopes(current: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    existing = _existing_ids(current or {}, "oauth2PermissionScopes")
    return [
        {
            "id": existing.get(SCOPE, stable_id("scope", SCOPE)),
            "value": SCOPE,
            "type": "User",
            "isEnabled": True,
            "adminConsentDisplayName": "Use the ServiceNow connector",
            "adminConsentDescription": "Lets the portal call the ServiceNow connector API as the signed-in user.",
            "userConsentDisplayName": "Use the ServiceNow connector",
            "userConsentDescription": "Lets the portal call the ServiceNow connector API as you.",
        }
    ]


def graph_permissions(write_back: bool, current: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Ours on Microsoft Graph (ReadWrite dropped again without `--write-back`); any other
    permission the registration already requests, on Graph or another API, is kept."""
    ours = {SECURITY_EVENTS_READ_ALL, SECURITY_EVENTS_READWRITE_ALL}
    ids = [SECURITY_EVENTS_READ_ALL, *([SECURITY_EVENTS_READWRITE_ALL] if write_back else [])]
    graph_access = [{"id": i, "type": "Role"} for i in ids]
    others: list[dict[str, Any]] = []
    for entry in (current or {}).get("requiredResourceAccess") or []:
        if entry.get("resourceAppId") == MICROSOFT_GRAPH:
            graph_access += [a for a in entry.get("resourceAccess") or [] if a.get("id") not in ours]
        else:
            others.append(entry)
    return [{"resourceAppId": MICROSOFT_GRAPH, "resourceAccess": graph_access}, *others]


def application(
    app_id: str,
    *,
    write_back: bool = False,
    app_host: str | None = None,
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The PATCH body for the registration whose client id is `app_id`."""
    body: dict[str, Any] = {
        "signInAudience": "AzureADMultipleOrgs",
        "identifierUris": [f"api://{app_id}"],
        "groupMembershipClaims": "DirectoryRole",
        "appRoles": app_roles(current),
        "api": {"requestedAccessTokenVersion": 2, "oauth2PermissionScopes": scopes(current)},
        "requiredResourceAccess": graph_permissions(write_back, current),
    }
    if app_host:
        body["web"] = {
            "redirectUris": [f"https://{app_host}/.auth/login/aad/callback"],
            "implicitGrantSettings": {"enableIdTokenIssuance": True},
        }
    return body


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["application", "role-ids"])
    parser.add_argument("--app-id", required=True, help="client id (appId) of the registration")
    parser.add_argument("--write-back", action="store_true", help="also SecurityEvents.ReadWrite.All")
    parser.add_argument("--app-host", help="function app host name, for the Easy Auth sign-in redirect")
    parser.add_argument("--current", type=Path, help="`az ad app show` output: keep the ids it has")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    current = json.loads(args.current.read_text(encoding="utf-8")) if args.current else None
    body = application(args.app_id, write_back=args.write_back, app_host=args.app_host, current=current)
    if args.what == "role-ids":
        for role in body["appRoles"]:
            print(f"{role['value']} {role['id']}")
    else:
        print(json.dumps(body, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
