"""Our own policy checks over infra/. Each returns a list of violations; empty means compliant.

They take the infra directory as an argument so the mutation tests can run exactly the same
functions over a broken copy and prove that they fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.docs import ASSETS

from .bicep import BicepFile, Expr, Resource, parse_dir

STORAGE = "Microsoft.Storage/storageAccounts"
KEY_VAULT = "Microsoft.KeyVault/vaults"
APP_INSIGHTS = "Microsoft.Insights/components"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
SITE = "Microsoft.Web/sites"
SITE_CONFIG = "Microsoft.Web/sites/config"
PUBLISHING_POLICY = "Microsoft.Web/sites/basicPublishingCredentialsPolicies"

# The identity's data-plane roles and the resource type each must be scoped to.
REQUIRED_ROLES: dict[str, tuple[str, str]] = {
    "Storage Blob Data Owner": ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", STORAGE),
    "Storage Queue Data Contributor": ("974c5e8b-45b9-4653-ba55-5f855dd0fb88", STORAGE),
    "Storage Table Data Contributor": ("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", STORAGE),
    "Key Vault Secrets Officer": ("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", KEY_VAULT),
    "Monitoring Metrics Publisher": ("3913510d-42f4-4e42-8a64-420c390055eb", APP_INSIGHTS),
}
# The parameter through which main.bicep passes the user-assigned identity's principal id.
IDENTITY_PRINCIPAL_PARAM = "identityPrincipalId"
# The anonymous functions' routes: the probe, ServiceNow's redirect, the API document and its
# docs page with each asset it may serve.
AUTH_EXCLUDED_PATHS = [
    "/api/health",
    "/api/oauth/callback",
    "/api/openapi.json",
    "/api/docs",
    *(f"/api/docs/{name}" for name in ASSETS),
    # ServiceNow's push hooks (`POST /api/servicenow/hooks/{hookId}`) prove themselves with an HMAC
    # signature; a trailing `/*` is the one wildcard Easy Auth matches.
    "/api/servicenow/hooks/*",
]


@dataclass(frozen=True)
class Infra:
    files: dict[str, BicepFile]
    directory: Path | None = None  # for the files beside the Bicep (main.parameters.json)

    @classmethod
    def load(cls, infra_dir: Path) -> Infra:
        return cls(parse_dir(infra_dir), infra_dir)

    def declared(self, type_: str) -> list[tuple[BicepFile, Resource]]:
        """Resources of a type that are created here (not `existing` references)."""
        return [(f, r) for f in self.files.values() for r in f.resources_of_type(type_) if not r.existing]

    def site_configs(self, name: str) -> list[Resource]:
        return [r for _, r in self.declared(SITE_CONFIG) if r.get("name") == name]


def _require_declared(infra: Infra, type_: str) -> list[tuple[BicepFile, Resource]] | str:
    found = infra.declared(type_)
    return found if found else f"no {type_} is declared"


def _expect(violations: list[str], res: Resource, dotted: str, expected: Any) -> None:
    actual = res.get(dotted, default="<missing>")
    if actual != expected:
        violations.append(f"{res.type} {res.symbol}: {dotted} is {actual!r}, expected {expected!r}")


def storage_is_entra_only(infra: Infra) -> list[str]:
    found = _require_declared(infra, STORAGE)
    if isinstance(found, str):
        return [found]
    violations: list[str] = []
    for _, res in found:
        _expect(violations, res, "properties.allowSharedKeyAccess", False)
        _expect(violations, res, "properties.allowBlobPublicAccess", False)
        _expect(violations, res, "properties.minimumTlsVersion", "TLS1_2")
        _expect(violations, res, "properties.supportsHttpsTrafficOnly", True)
    return violations


def key_vault_is_protected(infra: Infra) -> list[str]:
    found = _require_declared(infra, KEY_VAULT)
    if isinstance(found, str):
        return [found]
    violations: list[str] = []
    for _, res in found:
        _expect(violations, res, "properties.enableRbacAuthorization", True)
        _expect(violations, res, "properties.enableSoftDelete", True)
        _expect(violations, res, "properties.enablePurgeProtection", True)
        if "accessPolicies" in res.get("properties", {}):
            violations.append(f"{res.symbol}: access policies are declared next to RBAC authorization")
    return violations


def app_insights_is_entra_only(infra: Infra) -> list[str]:
    found = _require_declared(infra, APP_INSIGHTS)
    if isinstance(found, str):
        return [found]
    violations: list[str] = []
    for _, res in found:
        _expect(violations, res, "properties.DisableLocalAuth", True)
        if not isinstance(res.get("properties.WorkspaceResourceId"), Expr):
            violations.append(f"{res.symbol}: not linked to a Log Analytics workspace")
    return violations


def site_is_hardened(infra: Infra) -> list[str]:
    found = _require_declared(infra, SITE)
    if isinstance(found, str):
        return [found]
    violations: list[str] = []
    for _, res in found:
        _expect(violations, res, "properties.httpsOnly", True)
        _expect(violations, res, "properties.siteConfig.minTlsVersion", "1.2")
        if res.get("properties.siteConfig.ftpsState") is not None:
            # Flex Consumption refuses the site (error 51021); the 'ftp' policy below turns FTP off.
            violations.append(f"{res.symbol}: siteConfig.ftpsState is set; Flex Consumption rejects it")
        _expect(violations, res, "kind", "functionapp,linux")
        _expect(violations, res, "identity.type", "UserAssigned")
        _expect(violations, res, "properties.functionAppConfig.runtime.name", "python")
        _expect(violations, res, "properties.functionAppConfig.deployment.storage.type", "blobContainer")
        _expect(
            violations,
            res,
            "properties.functionAppConfig.deployment.storage.authentication.type",
            "UserAssignedIdentity",
        )
    policies = {r.get("name"): r for _, r in infra.declared(PUBLISHING_POLICY)}
    for name in ("ftp", "scm"):
        if name not in policies:
            violations.append(f"basicPublishingCredentialsPolicies '{name}' is not declared")
        else:
            _expect(violations, policies[name], "properties.allow", False)
    return violations


def auth_guards_all_but_anonymous_routes(infra: Infra) -> list[str]:
    configs = infra.site_configs("authsettingsV2")
    if not configs:
        return ["no Microsoft.Web/sites/config 'authsettingsV2' is declared"]
    violations: list[str] = []
    for res in configs:
        _expect(violations, res, "properties.platform.enabled", True)
        _expect(violations, res, "properties.globalValidation.requireAuthentication", True)
        _expect(violations, res, "properties.globalValidation.excludedPaths", AUTH_EXCLUDED_PATHS)
        _expect(violations, res, "properties.identityProviders.azureActiveDirectory.enabled", True)
        action = res.get("properties.globalValidation.unauthenticatedClientAction")
        if action == "AllowAnonymous":
            violations.append(f"{res.symbol}: unauthenticatedClientAction lets anonymous requests through")
    return violations


def no_platform_cors(infra: Infra) -> list[str]:
    """The app answers CORS itself (functions/_cors.py), as it does locally: a platform list
    (`siteConfig.cors`, or the `web` config's `cors`) would answer preflights before the app and
    add its own Access-Control-* headers to every response."""
    violations: list[str] = []
    for _, res in infra.declared(SITE):
        if res.get("properties.siteConfig.cors", default=None) is not None:
            violations.append(f"{res.symbol}: properties.siteConfig.cors is set; CORS belongs to the app")
    for res in infra.site_configs("web"):
        if res.get("properties.cors", default=None) is not None:
            violations.append(f"{res.symbol}: properties.cors is set; CORS belongs to the app")
    return violations


def _role_id(bicep: BicepFile, res: Resource) -> str | None:
    """The role GUID in `subscriptionResourceId('...roleDefinitions', <literal or var>)`."""
    value = res.get("properties.roleDefinitionId")
    if not isinstance(value, Expr):
        return value if isinstance(value, str) else None
    text = value.text
    prefix = "subscriptionResourceId('Microsoft.Authorization/roleDefinitions',"
    if not (text.startswith(prefix) and text.endswith(")")):
        return None
    arg = text[len(prefix) : -1].strip()
    if arg.startswith("'") and arg.endswith("'"):
        return arg[1:-1]
    resolved = bicep.resolve(Expr(arg))
    return resolved if isinstance(resolved, str) else None


def identity_has_required_roles(infra: Infra) -> list[str]:
    violations: list[str] = []
    for role_name, (role_id, scope_type) in REQUIRED_ROLES.items():
        matches: list[str] = []
        for bicep, res in infra.declared(ROLE_ASSIGNMENT):
            if _role_id(bicep, res) != role_id:
                continue
            principal = res.get("properties.principalId")
            if not (isinstance(principal, Expr) and principal.symbol == IDENTITY_PRINCIPAL_PARAM):
                continue
            if res.condition:
                violations.append(f"{role_name}: assignment {res.symbol} is conditional ({res.condition})")
            scope = res.get("scope")
            target = bicep.resources.get(scope.symbol or "") if isinstance(scope, Expr) else None
            if target is None:
                violations.append(f"{role_name}: assignment {res.symbol} is not scoped to a resource")
            elif target.type.lower() != scope_type.lower():
                violations.append(f"{role_name}: assignment {res.symbol} is scoped to a {target.type}")
            name = res.get("name")
            if not (isinstance(name, Expr) and name.text.startswith("guid(")):
                violations.append(f"{role_name}: assignment {res.symbol} name is not a guid()")
            _expect(violations, res, "properties.principalType", "ServicePrincipal")
            matches.append(res.symbol)
        if not matches:
            violations.append(f"{role_name} ({role_id}) is not assigned to {IDENTITY_PRINCIPAL_PARAM}")
        elif len(matches) > 1:
            violations.append(f"{role_name} is assigned more than once: {matches}")
    return violations


def app_settings(infra: Infra) -> dict[str, Any]:
    """App setting name -> value, from the 'appsettings' config resource and siteConfig.appSettings."""
    settings: dict[str, Any] = {}
    for res in infra.site_configs("appsettings"):
        settings.update(res.get("properties", {}))
    for _, site in infra.declared(SITE):
        for item in site.get("properties.siteConfig.appSettings", []) or []:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                settings[item["name"]] = item.get("value")
    return settings


POLICIES: dict[str, Callable[[Infra], list[str]]] = {
    "storage is Entra-only": storage_is_entra_only,
    "key vault is protected": key_vault_is_protected,
    "app insights is Entra-only": app_insights_is_entra_only,
    "site is hardened": site_is_hardened,
    "auth guards all but anonymous routes": auth_guards_all_but_anonymous_routes,
    "no platform CORS": no_platform_cors,
    "identity has required roles": identity_has_required_roles,
}
