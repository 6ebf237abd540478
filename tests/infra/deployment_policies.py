"""Policies about what Azure accepts at deployment time and what azd feeds the templates.

Each caught a template that compiled (or would have) and then failed, or deployed something other
than what the operator asked for: Flex Consumption limits, Easy Auth's client check, the deployer's
principal type, azd environment variables that never reached a parameter, cloud-specific hosts.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .bicep import BicepFile, Expr
from .policies import ROLE_ASSIGNMENT, SITE_CONFIG, Infra

# Flex Consumption's documented range for functionAppConfig.scaleAndConcurrency.maximumInstanceCount.
FLEX_MAX_INSTANCES = (40, 1000)
# main.bicep parameter -> the azd environment variable main.parameters.json must read it from.
AZD_PARAMETERS: dict[str, str] = {
    "principalType": "AZURE_PRINCIPAL_TYPE",
    "authClientId": "AUTH_CLIENT_ID",
    "portalClientId": "PORTAL_CLIENT_ID",
    "authOpenIdIssuer": "AUTH_OPENID_ISSUER",
    "authUnauthenticatedAction": "AUTH_UNAUTHENTICATED_ACTION",
    "portalUrl": "PORTAL_URL",
    "graphClientId": "GRAPH_CLIENT_ID",
    "operatorTenantId": "OPERATOR_TENANT_ID",
    "alertEmail": "ALERT_EMAIL",
    "alertActionGroupId": "ALERT_ACTION_GROUP_ID",
}
# Hosts that differ between Azure clouds: take them from environment(), never a literal.
CLOUD_HOSTS = ("login.microsoftonline.com", "login.windows.net", "management.azure.com")
_AZD_VALUE = re.compile(r"^\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?:=(?P<default>[^}]*))?\}$")


def _parameters(infra: Infra) -> dict[str, Any]:
    if infra.directory is None:
        return {}
    path = infra.directory / "main.parameters.json"
    return dict(json.loads(path.read_text(encoding="utf-8"))["parameters"])


def _allowed(bicep: BicepFile, param: str) -> list[str] | None:
    raw = bicep.param_decorators.get(param, {}).get("allowed")
    return None if raw is None else re.findall(r"'([^']*)'", raw)


def scale_limit_is_accepted(infra: Infra) -> list[str]:
    low, high = FLEX_MAX_INSTANCES
    violations: list[str] = []
    for relative, bicep in infra.files.items():
        if "maximumInstanceCount" not in bicep.params:
            continue
        decorators = bicep.param_decorators.get("maximumInstanceCount", {})
        if int(decorators.get("minValue", "0") or 0) < low:
            violations.append(f"{relative}: maximumInstanceCount accepts values below {low}")
        if int(decorators.get("maxValue", str(high + 1)) or 0) > high:
            violations.append(f"{relative}: maximumInstanceCount accepts values above {high}")
        default = bicep.params["maximumInstanceCount"]
        if isinstance(default, int) and not low <= default <= high:
            violations.append(f"{relative}: maximumInstanceCount defaults to {default}")
    value = _parameters(infra).get("maximumInstanceCount", {}).get("value")
    if isinstance(value, int) and not low <= value <= high:
        violations.append(f"main.parameters.json: maximumInstanceCount is {value}")
    return violations


def auth_accepts_only_known_clients(infra: Infra) -> list[str]:
    """Easy Auth must refuse a token that another application obtained for our API: the accepted
    client ids are the API registration's and the portal's, from parameters, never an open list."""
    violations: list[str] = []
    key = "properties.identityProviders.azureActiveDirectory.validation.defaultAuthorizationPolicy"
    found = False
    for bicep in infra.files.values():
        for res in bicep.resources_of_type(SITE_CONFIG):
            if res.existing or res.get("name") != "authsettingsV2":
                continue
            found = True
            allowed = bicep.resolve(res.get(f"{key}.allowedApplications"))
            text = allowed.text if isinstance(allowed, Expr) else json.dumps(allowed, default=str)
            if not allowed or "[]" in text.replace(" ", ""):
                violations.append(f"{res.symbol}: allowedApplications may be empty (any client is accepted)")
            for name in ("authClientId", "portalClientId"):
                if name not in text:
                    violations.append(f"{res.symbol}: allowedApplications does not list {name}")
    if not found:
        violations.append("no authsettingsV2 is declared")
    return violations


def deployer_role_follows_azd_principal_type(infra: Infra) -> list[str]:
    violations: list[str] = []
    for relative, bicep in infra.files.items():
        for res in bicep.resources_of_type(ROLE_ASSIGNMENT):
            principal = res.get("properties.principalId")
            if res.existing or not isinstance(principal, Expr) or principal.symbol != "deployerPrincipalId":
                continue
            kind = res.get("properties.principalType")
            if not (isinstance(kind, Expr) and kind.symbol == "deployerPrincipalType"):
                violations.append(f"{relative}: {res.symbol} principalType is {kind!r}, not the parameter")
    rbac = infra.files["main.bicep"].modules.get("rbac")
    passed = rbac.body.get("params", {}).get("deployerPrincipalType") if rbac else None
    if not (isinstance(passed, Expr) and passed.symbol == "principalType"):
        violations.append("main.bicep does not pass principalType to the rbac module")
    return violations


def parameters_follow_azd_environment(infra: Infra) -> list[str]:
    main = infra.files["main.bicep"]
    parameters = _parameters(infra)
    violations: list[str] = []
    for param, env in AZD_PARAMETERS.items():
        value = parameters.get(param, {}).get("value")
        m = _AZD_VALUE.match(value) if isinstance(value, str) else None
        if m is None or m.group("name") != env:
            violations.append(f"main.parameters.json: {param} is {value!r}, expected ${{{env}}}")
            continue
        allowed = _allowed(main, param)
        if allowed is not None and m.group("default") not in allowed:
            violations.append(
                f"main.parameters.json: {param} defaults to {m.group('default')!r}, not in {allowed}"
            )
    return violations


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Expr):
        return [value.text]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def no_hardcoded_cloud_hosts(infra: Infra) -> list[str]:
    """Values only (comments may name a host): a national cloud gets its own from environment()."""
    violations: list[str] = []
    for relative, bicep in infra.files.items():
        parts: list[Any] = [bicep.params, bicep.variables, bicep.outputs]
        parts += [r.body for r in bicep.resources.values()] + [m.body for m in bicep.modules.values()]
        for text in _strings(parts):
            violations += [f"{relative}: {host} in {text!r}" for host in CLOUD_HOSTS if host in text]
    default = infra.files["main.bicep"].params.get("entraAuthorityHost")
    if not (isinstance(default, Expr) and default.text == "environment().authentication.loginEndpoint"):
        violations.append(f"main.bicep: entraAuthorityHost defaults to {default!r}")
    return violations


def graph_client_id_is_explicit(infra: Infra) -> list[str]:
    """An unset GRAPH_CLIENT_ID must stop the deployment; `none` turns Microsoft Graph off on purpose."""
    main = infra.files["main.bicep"]
    violations: list[str] = []
    if "graphClientId" not in main.params or main.params["graphClientId"] is not None:
        violations.append("main.bicep: graphClientId must be a parameter without a default")
    if int(main.param_decorators.get("graphClientId", {}).get("minLength", "0") or 0) < 1:
        violations.append("main.bicep: graphClientId accepts an empty value (@minLength(1) missing)")
    function = main.modules.get("functionApp")
    passed = function.body.get("params", {}).get("graphClientId") if function else None
    if not (isinstance(passed, Expr) and "'none'" in passed.text):
        violations.append(f"main.bicep: graphClientId is passed as {passed!r}, without the 'none' opt-out")
    return violations


DEPLOYMENT_POLICIES = {
    "scale limit is accepted by Flex Consumption": scale_limit_is_accepted,
    "auth accepts only known clients": auth_accepts_only_known_clients,
    "deployer role follows azd principal type": deployer_role_follows_azd_principal_type,
    "parameters follow the azd environment": parameters_follow_azd_environment,
    "no hard-coded cloud hosts": no_hardcoded_cloud_hosts,
    "graph client id is explicit": graph_client_id_is_explicit,
}
