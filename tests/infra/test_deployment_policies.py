"""The deployment-time policies hold on infra/, and each fails on the template as it was before."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from .deployment_policies import (
    DEPLOYMENT_POLICIES,
    auth_accepts_only_known_clients,
    deployer_role_follows_azd_principal_type,
    graph_client_id_is_explicit,
    no_hardcoded_cloud_hosts,
    parameters_follow_azd_environment,
    scale_limit_is_accepted,
)
from .policies import Infra, auth_guards_all_but_anonymous_routes, site_is_hardened

Mutate = Callable[[str, str, str], Path]


@pytest.mark.parametrize("name", sorted(DEPLOYMENT_POLICIES))
def test_deployment_policy_holds(infra: Infra, name: str) -> None:
    assert DEPLOYMENT_POLICIES[name](infra) == []


def test_flex_rejects_ftps_state(mutate: Mutate) -> None:
    anchor = "      minTlsVersion: '1.2'\n"
    broken = mutate("app/function.bicep", anchor, anchor + "      ftpsState: 'Disabled'\n")
    assert any("ftpsState" in v for v in site_is_hardened(Infra.load(broken)))


@pytest.mark.parametrize(
    ("relative", "old"), [("main.bicep", "@minValue(40)"), ("app/function.bicep", "@minValue(40)")]
)
def test_scale_limit_below_forty_fails(mutate: Mutate, relative: str, old: str) -> None:
    broken = mutate(relative, old, "@minValue(1)")
    assert any("below 40" in v for v in scale_limit_is_accepted(Infra.load(broken)))


def test_scale_limit_in_the_parameters_file_is_checked(mutate: Mutate) -> None:
    broken = mutate("main.parameters.json", '"value": 100', '"value": 10')
    assert scale_limit_is_accepted(Infra.load(broken)) == ["main.parameters.json: maximumInstanceCount is 10"]


def test_easy_auth_without_allowed_applications_fails(mutate: Mutate) -> None:
    broken = mutate(
        "app/function.bicep",
        "          defaultAuthorizationPolicy: {\n            allowedApplications: allowedClientApplications\n          }\n",
        "",
    )
    assert any("allowedApplications" in v for v in auth_accepts_only_known_clients(Infra.load(broken)))


def test_easy_auth_ignoring_the_portal_client_fails(mutate: Mutate) -> None:
    broken = mutate(
        "app/function.bicep",
        "empty(portalClientId) ? [\n  authClientId\n] : [\n  authClientId\n  portalClientId\n]",
        "[\n  authClientId\n]",
    )
    assert auth_accepts_only_known_clients(Infra.load(broken)) == [
        "authSettings: allowedApplications does not list portalClientId"
    ]


def test_deployer_as_user_only_fails(mutate: Mutate) -> None:
    broken = mutate("app/rbac.bicep", "principalType: deployerPrincipalType", "principalType: 'User'")
    assert any(
        "deployerKeyVaultSecretsOfficer" in v
        for v in deployer_role_follows_azd_principal_type(Infra.load(broken))
    )


@pytest.mark.parametrize(
    ("param", "env"),
    [
        ("principalType", "${AZURE_PRINCIPAL_TYPE=User}"),
        ("authOpenIdIssuer", "${AUTH_OPENID_ISSUER}"),
        ("authUnauthenticatedAction", "${AUTH_UNAUTHENTICATED_ACTION=Return401}"),
        ("operatorTenantId", "${OPERATOR_TENANT_ID}"),
    ],
)
def test_unmapped_parameter_fails(mutate: Mutate, param: str, env: str) -> None:
    broken = mutate("main.parameters.json", f'    "{param}": {{\n      "value": "{env}"\n    }},\n', "")
    assert any(param in v for v in parameters_follow_azd_environment(Infra.load(broken)))


def test_parameter_default_outside_allowed_values_fails(mutate: Mutate) -> None:
    broken = mutate(
        "main.parameters.json",
        "${AUTH_UNAUTHENTICATED_ACTION=Return401}",
        "${AUTH_UNAUTHENTICATED_ACTION=Return402}",
    )
    assert any("Return402" in v for v in parameters_follow_azd_environment(Infra.load(broken)))


def test_hard_coded_login_host_fails(mutate: Mutate) -> None:
    broken = mutate(
        "main.bicep",
        "param entraAuthorityHost string = environment().authentication.loginEndpoint",
        "param entraAuthorityHost string = 'https://login.microsoftonline.com'",
    )
    violations = no_hardcoded_cloud_hosts(Infra.load(broken))
    assert any("login.microsoftonline.com" in v for v in violations)


def test_optional_graph_client_id_fails(mutate: Mutate) -> None:
    broken = mutate(
        "main.bicep",
        "@minLength(1)\n@description('Client id of the multi-tenant Entra app registration used to read",
        "@description('Client id of the multi-tenant Entra app registration used to read",
    )
    assert any("@minLength(1)" in v for v in graph_client_id_is_explicit(Infra.load(broken)))


def test_hooks_prefix_is_the_only_wildcard(mutate: Mutate) -> None:
    broken = mutate("app/function.bicep", "'/api/servicenow/hooks/*'", "'/api/*'")
    assert any("excludedPaths" in v for v in auth_guards_all_but_anonymous_routes(Infra.load(broken)))


def test_hooks_prefix_must_be_excluded(mutate: Mutate) -> None:
    broken = mutate("app/function.bicep", "        '/api/servicenow/hooks/*'\n", "")
    assert any("excludedPaths" in v for v in auth_guards_all_but_anonymous_routes(Infra.load(broken)))


def _routes() -> dict[str, str]:
    """`route=` of every HTTP function -> its module, read from the source (importing the app here
    would build every blueprint)."""
    functions = Path(__file__).resolve().parents[2] / "functions"
    return {
        route: source.name
        for source in functions.glob("*.py")
        for route in re.findall(r'route\(route="([^"]+)"', source.read_text(encoding="utf-8"))
    }


def test_the_hooks_wildcard_opens_the_push_hook_and_nothing_else() -> None:
    opened = [route for route in _routes() if fnmatch.fnmatchcase(f"/api/{route}", "/api/servicenow/hooks/*")]
    assert opened in ([], ["servicenow/hooks/{hookId}"]), opened
