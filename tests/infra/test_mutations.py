"""Mutation tests: break a copy of infra/ and prove that the same checks then fail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .bicep import parse
from .checkov_runner import INFRA_DIR, run_checkov
from .policies import (
    Infra,
    app_insights_is_entra_only,
    auth_guards_all_but_anonymous_routes,
    identity_has_required_roles,
    key_vault_is_protected,
    site_is_hardened,
    storage_is_entra_only,
)
from .settings_coverage import coverage_violations, wiring_violations

Mutate = Callable[[str, str, str], Path]


def test_checkov_fails_when_shared_key_access_is_turned_on(mutate: Mutate, tmp_path: Path) -> None:
    broken = mutate("core/storage.bicep", "allowSharedKeyAccess: false", "allowSharedKeyAccess: true")
    report = run_checkov(broken, home=tmp_path / "home")
    assert "CKV2_CONNECTOR_1" in report.failed_ids()
    assert report.returncode == 1
    assert any("allowSharedKeyAccess" in v for v in storage_is_entra_only(Infra.load(broken)))


def test_checkov_fails_when_shared_key_setting_is_left_to_the_default(mutate: Mutate, tmp_path: Path) -> None:
    # Azure's default is true, so omitting the property must fail as well.
    broken = mutate("core/storage.bicep", "    allowSharedKeyAccess: false\n", "")
    report = run_checkov(broken, home=tmp_path / "home")
    assert "CKV2_CONNECTOR_1" in report.failed_ids()


ROLE_ASSIGNMENTS = [
    "storageBlobDataOwner",
    "storageQueueDataContributor",
    "storageTableDataContributor",
    "keyVaultSecretsOfficer",
    "monitoringMetricsPublisher",
]


@pytest.mark.parametrize("symbol", ROLE_ASSIGNMENTS)
def test_policy_fails_when_a_role_assignment_is_removed(mutate: Mutate, symbol: str) -> None:
    rbac = parse(INFRA_DIR / "app/rbac.bicep")
    block = rbac.text[rbac.resources[symbol].start : rbac.resources[symbol].end]
    broken = mutate("app/rbac.bicep", block, "")
    violations = identity_has_required_roles(Infra.load(broken))
    assert len(violations) == 1
    assert "is not assigned" in violations[0]


def test_policy_fails_when_a_role_is_scoped_to_the_resource_group(mutate: Mutate) -> None:
    broken = mutate(
        "app/rbac.bicep",
        "guid(vault.id, identityPrincipalId, keyVaultSecretsOfficerRoleId)\n  scope: vault\n",
        "guid(vault.id, identityPrincipalId, keyVaultSecretsOfficerRoleId)\n  scope: resourceGroup()\n",
    )
    assert any("not scoped to a resource" in v for v in identity_has_required_roles(Infra.load(broken)))


def test_policy_fails_when_a_role_goes_to_another_principal(mutate: Mutate) -> None:
    broken = mutate(
        "app/rbac.bicep",
        "principalId: identityPrincipalId\n    principalType: 'ServicePrincipal'\n  }\n}\n\n"
        "// Entra-authenticated telemetry",
        "principalId: deployerPrincipalId\n    principalType: 'ServicePrincipal'\n  }\n}\n\n"
        "// Entra-authenticated telemetry",
    )
    violations = identity_has_required_roles(Infra.load(broken))
    assert any("Key Vault Secrets Officer" in v for v in violations)


@pytest.mark.parametrize("path", ["/api/health", "/api/oauth/callback"])
def test_policy_fails_when_an_excluded_path_is_removed(mutate: Mutate, path: str) -> None:
    broken = mutate("app/function.bicep", f"        '{path}'\n", "")
    assert any("excludedPaths" in v for v in auth_guards_all_but_anonymous_routes(Infra.load(broken)))


def test_policy_fails_when_an_extra_path_is_excluded(mutate: Mutate) -> None:
    broken = mutate(
        "app/function.bicep", "        '/api/health'\n", "        '/api/health'\n        '/api/tickets'\n"
    )
    assert any("excludedPaths" in v for v in auth_guards_all_but_anonymous_routes(Infra.load(broken)))


def test_policy_fails_when_anonymous_requests_are_allowed(mutate: Mutate) -> None:
    broken = mutate("app/function.bicep", "requireAuthentication: true", "requireAuthentication: false")
    assert auth_guards_all_but_anonymous_routes(Infra.load(broken)) != []


@pytest.mark.parametrize(
    ("relative", "old", "new", "check"),
    [
        (
            "core/keyvault.bicep",
            "enablePurgeProtection: true",
            "enablePurgeProtection: false",
            key_vault_is_protected,
        ),
        ("core/keyvault.bicep", "enableSoftDelete: true", "enableSoftDelete: false", key_vault_is_protected),
        (
            "core/keyvault.bicep",
            "enableRbacAuthorization: true",
            "enableRbacAuthorization: false",
            key_vault_is_protected,
        ),
        (
            "core/monitoring.bicep",
            "DisableLocalAuth: true",
            "DisableLocalAuth: false",
            app_insights_is_entra_only,
        ),
        ("app/function.bicep", "httpsOnly: true", "httpsOnly: false", site_is_hardened),
        ("app/function.bicep", "minTlsVersion: '1.2'", "minTlsVersion: '1.0'", site_is_hardened),
        (
            "app/function.bicep",
            "name: 'ftp'\n  properties: {\n    allow: false",
            "name: 'ftp'\n  properties: {\n    allow: true",
            site_is_hardened,
        ),
        (
            "core/storage.bicep",
            "minimumTlsVersion: 'TLS1_2'",
            "minimumTlsVersion: 'TLS1_0'",
            storage_is_entra_only,
        ),
        (
            "core/storage.bicep",
            "allowBlobPublicAccess: false",
            "allowBlobPublicAccess: true",
            storage_is_entra_only,
        ),
    ],
)
def test_policy_fails_when_a_hardening_setting_is_flipped(
    mutate: Mutate, relative: str, old: str, new: str, check: Callable[[Infra], list[str]]
) -> None:
    assert check(Infra.load(mutate(relative, old, new))) != []


def test_coverage_fails_when_a_required_setting_is_dropped(mutate: Mutate) -> None:
    broken = mutate("app/function.bicep", "    KEY_VAULT_URL: keyVaultUri\n", "")
    violations = coverage_violations(Infra.load(broken), broken / "README.md")
    assert any("KEY_VAULT_URL" in v for v in violations)


def test_coverage_fails_when_an_optional_setting_is_set_but_undocumented(mutate: Mutate) -> None:
    broken = mutate("app/function.bicep", "    SYNC_SCHEDULE: syncSchedule\n", "")
    violations = coverage_violations(Infra.load(broken), broken / "README.md")
    assert any("SYNC_SCHEDULE" in v for v in violations)


def test_coverage_fails_when_local_dev_is_turned_on(mutate: Mutate) -> None:
    broken = mutate(
        "app/function.bicep",
        "    SYNC_SCHEDULE: syncSchedule\n",
        "    SYNC_SCHEDULE: syncSchedule\n    LOCAL_DEV: 'true'\n",
    )
    violations = coverage_violations(Infra.load(broken), broken / "README.md")
    assert any("LOCAL_DEV" in v for v in violations)


def test_coverage_fails_when_the_readme_forgets_an_optional_setting(mutate: Mutate) -> None:
    broken = mutate("README.md", "`LOCAL_CA_BUNDLE`", "LOCAL_CA_BUNDLE")
    violations = coverage_violations(Infra.load(broken), broken / "README.md")
    assert any("LOCAL_CA_BUNDLE" in v for v in violations)


def test_wiring_fails_when_the_graph_secret_is_inlined(mutate: Mutate) -> None:
    broken = mutate(
        "app/function.bicep",
        "GRAPH_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${graphClientSecretName}/)'",
        "GRAPH_CLIENT_SECRET: 'hunter2'",
    )
    assert any("GRAPH_CLIENT_SECRET" in v for v in wiring_violations(Infra.load(broken)))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    OPERATOR_TENANT_ID: operatorTenantId\n", ""),
        ("    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString\n", ""),
    ],
)
def test_wiring_fails_when_a_feature_setting_is_dropped(mutate: Mutate, old: str, new: str) -> None:
    name = old.split(":")[0].strip()
    assert any(name in v for v in wiring_violations(Infra.load(mutate("app/function.bicep", old, new))))


def test_wiring_fails_when_main_does_not_pass_the_operator_tenant(mutate: Mutate) -> None:
    broken = mutate("main.bicep", "    operatorTenantId: operatorTenantId\n", "")
    assert any("operatorTenantId" in v for v in wiring_violations(Infra.load(broken)))
