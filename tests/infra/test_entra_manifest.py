"""infra/entra/manifest.py: the app registration the app's identity rules rely on."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from types import ModuleType

from shared.identity import SECURITY_ADMINISTRATOR_TEMPLATE_ID, Role

from .checkov_runner import INFRA_DIR

MANIFEST = INFRA_DIR / "entra" / "manifest.py"
APP_ID = "11111111-2222-3333-4444-555555555555"
# Microsoft Graph's application permissions (appRoles of 00000003-0000-0000-c000-000000000000).
SECURITY_EVENTS_READ_ALL = "bf394140-e372-4bf9-a898-299cfc7564e5"
SECURITY_EVENTS_READWRITE_ALL = "d903a879-88e0-4c09-b0c9-82f6a1333f84"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("entra_manifest", MANIFEST)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


manifest = _module()


def _run(*args: str, seed: str = "0") -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, str(MANIFEST), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_role_values_are_the_roles_the_app_knows() -> None:
    values = [role["value"] for role in manifest.application(APP_ID)["appRoles"]]
    assert sorted(values) == sorted(role.value for role in Role)
    assert {"Connector.Admin", "Tickets.ReadWrite", "Tickets.Read", "Connector.Operator"} <= set(values)


def test_role_ids_are_stable_across_runs_and_machines() -> None:
    first = json.loads(_run("application", "--app-id", APP_ID, seed="1"))
    second = json.loads(_run("application", "--app-id", APP_ID, seed="2"))
    assert first == second
    ids = {role["value"]: role["id"] for role in first["appRoles"]}
    assert ids["Connector.Admin"] == str(
        uuid.uuid5(
            uuid.uuid5(uuid.NAMESPACE_URL, "urn:servicenow-ticketing-connector:entra-app-registration"),
            "role:Connector.Admin",
        )
    )
    assert len(set(ids.values())) == len(ids)
    listed = dict(line.split() for line in _run("role-ids", "--app-id", APP_ID).splitlines())
    assert listed == ids


def test_roles_are_for_users_and_enabled() -> None:
    for role in manifest.application(APP_ID)["appRoles"]:
        assert role["allowedMemberTypes"] == ["User"], role["value"]
        assert role["isEnabled"] is True
        assert role["description"]
        uuid.UUID(role["id"])


def test_ids_the_registration_already_has_are_kept() -> None:
    current = {
        "appRoles": [{"id": "aaaaaaaa-0000-0000-0000-000000000001", "value": "Connector.Admin"}],
        "api": {
            "oauth2PermissionScopes": [
                {"id": "aaaaaaaa-0000-0000-0000-000000000002", "value": "user_impersonation"}
            ]
        },
    }
    body = manifest.application(APP_ID, current=current)
    ids = {role["value"]: role["id"] for role in body["appRoles"]}
    assert ids["Connector.Admin"] == "aaaaaaaa-0000-0000-0000-000000000001"
    assert ids["Tickets.Read"] == manifest.stable_id("role", "Tickets.Read")
    assert body["api"]["oauth2PermissionScopes"][0]["id"] == "aaaaaaaa-0000-0000-0000-000000000002"


def test_the_portal_scope_is_exposed_on_the_api_uri() -> None:
    body = manifest.application(APP_ID)
    assert body["identifierUris"] == [f"api://{APP_ID}"]
    assert body["signInAudience"] == "AzureADMultipleOrgs"
    [scope] = body["api"]["oauth2PermissionScopes"]
    assert scope["value"] == "user_impersonation"
    assert scope["isEnabled"] is True


def test_tokens_carry_directory_roles_for_the_security_administrator_rule() -> None:
    # shared/identity.py grants Connector.Admin to the wids claim SECURITY_ADMINISTRATOR_TEMPLATE_ID;
    # Entra emits wids only with groupMembershipClaims DirectoryRole (or All).
    assert SECURITY_ADMINISTRATOR_TEMPLATE_ID == "194ae4cb-b126-40b2-bd5b-6091b380977d"
    assert manifest.application(APP_ID)["groupMembershipClaims"] in ("DirectoryRole", "All")


def test_graph_permissions_read_only_unless_write_back() -> None:
    [graph] = manifest.application(APP_ID)["requiredResourceAccess"]
    assert graph["resourceAppId"] == "00000003-0000-0000-c000-000000000000"
    assert graph["resourceAccess"] == [{"id": SECURITY_EVENTS_READ_ALL, "type": "Role"}]
    [graph] = manifest.application(APP_ID, write_back=True)["requiredResourceAccess"]
    assert graph["resourceAccess"] == [
        {"id": SECURITY_EVENTS_READ_ALL, "type": "Role"},
        {"id": SECURITY_EVENTS_READWRITE_ALL, "type": "Role"},
    ]


def test_other_permissions_are_kept_and_write_back_can_be_dropped() -> None:
    user_read = {"id": "e1fe6dd8-ba31-4d61-89e7-88639da4683d", "type": "Scope"}
    other_api = {"resourceAppId": "00000002-0000-0000-c000-000000000000", "resourceAccess": [user_read]}
    current = {
        "requiredResourceAccess": [
            {
                "resourceAppId": "00000003-0000-0000-c000-000000000000",
                "resourceAccess": [user_read, {"id": SECURITY_EVENTS_READWRITE_ALL, "type": "Role"}],
            },
            other_api,
        ]
    }
    graph, other = manifest.application(APP_ID, current=current)["requiredResourceAccess"]
    assert graph["resourceAccess"] == [{"id": SECURITY_EVENTS_READ_ALL, "type": "Role"}, user_read]
    assert other == other_api


def test_easy_auth_sign_in_redirect_only_with_a_host() -> None:
    assert "web" not in manifest.application(APP_ID)
    web = manifest.application(APP_ID, app_host="func-x.azurewebsites.net")["web"]
    assert web["redirectUris"] == ["https://func-x.azurewebsites.net/.auth/login/aad/callback"]
    assert web["implicitGrantSettings"]["enableIdTokenIssuance"] is True
