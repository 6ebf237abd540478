"""Does the Bicep set every setting the app reads (shared.settings.Settings)?"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, AliasPath

from shared.settings import Settings

from .bicep import Expr
from .policies import Infra, app_settings

# Settings that the Bicep deliberately does not set, with the reason. Each one must be explained
# in infra/README.md (the "Deploy to Azure" section) too.
DOCUMENTED_OPTIONAL: dict[str, str] = {
    "DataStorage": "connection-string form, for local development against Azurite; in Azure the "
    "app uses DataStorage__tableServiceUri/__queueServiceUri with the managed identity",
    "LOCAL_CA_BUNDLE": "only the local stand-ins use a private CA; in Azure the system trust store applies",
    "LOCAL_DEV": "must stay unset (false) in Azure: it trusts the principal header without Easy Auth "
    "and allows ServiceNow hosts outside SERVICENOW_URL_TEMPLATE",
    "WEBSITE_AUTH_ENABLED": "set by the platform itself when App Service Authentication is enabled",
}
# Never set by the Bicep (or only to a harmless value).
FORBIDDEN: dict[str, set[str]] = {
    "LOCAL_DEV": {"false"},
    "FUNCTIONS_WORKER_RUNTIME": set(),  # Flex Consumption rejects it: functionAppConfig.runtime
    "FUNCTIONS_EXTENSION_VERSION": set(),
    "AzureWebJobsStorage": set(),  # a connection string would need shared keys
}


def setting_names(field_name: str) -> list[str]:
    """The environment names one Settings field is read from."""
    info = Settings.model_fields[field_name]
    alias = info.validation_alias or info.alias or field_name
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    names: list[str] = []
    for choice in choices:
        if isinstance(choice, AliasPath):
            names.append(str(choice.path[0]))
        else:
            names.append(choice)
    return names


FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def binding_settings() -> set[str]:
    """App settings the triggers read through `%NAME%` (the host resolves those, not Settings)."""
    return {
        name
        for source in FUNCTIONS.glob("*.py")
        for name in re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)%", source.read_text(encoding="utf-8"))
    }


def coverage_violations(infra: Infra, readme: Path) -> list[str]:
    settings = app_settings(infra)
    readme_text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    violations: list[str] = []
    all_names: set[str] = set()
    for field_name, info in Settings.model_fields.items():
        names = setting_names(field_name)
        all_names.update(names)
        set_by_bicep = [n for n in names if n in settings]
        documented = [n for n in names if n in DOCUMENTED_OPTIONAL]
        if info.is_required() and not set_by_bicep:
            violations.append(f"{field_name} ({'/'.join(names)}) is required but not set by the Bicep")
        elif not set_by_bicep and not documented:
            violations.append(
                f"{field_name} ({'/'.join(names)}) is neither set by the Bicep nor documented as optional"
            )
    for name in sorted(binding_settings() - set(settings)):
        violations.append(f"{name} is read by a trigger binding (%{name}%) but not set by the Bicep")
    for name in DOCUMENTED_OPTIONAL:
        if name not in all_names:
            violations.append(f"{name} is documented as optional but Settings no longer reads it")
        if f"`{name}`" not in readme_text:
            violations.append(
                f"{name} is documented as optional but infra/README.md does not mention `{name}`"
            )
    for name, allowed in FORBIDDEN.items():
        if name in settings and str(settings[name]).lower() not in allowed:
            violations.append(f"{name} must not be set in Azure (found {settings[name]!r})")
    return violations


def wiring_violations(infra: Infra) -> list[str]:
    """The values that must point at the right things (identity, vault, callback route)."""
    settings = app_settings(infra)
    violations: list[str] = []

    def expect_expr(name: str, text: str) -> None:
        value = settings.get(name)
        if not (isinstance(value, Expr) and value.text == text):
            violations.append(f"{name} is {value!r}, expected the expression {text}")

    for name in ("AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId", "DataStorage__clientId"):
        expect_expr(name, "identityClientId")
    for prefix in ("AzureWebJobsStorage", "DataStorage"):
        if settings.get(f"{prefix}__credential") != "managedidentity":
            violations.append(f"{prefix}__credential must be 'managedidentity'")
    expect_expr("AzureWebJobsStorage__blobServiceUri", "storageBlobEndpoint")
    expect_expr("AzureWebJobsStorage__queueServiceUri", "storageQueueEndpoint")
    expect_expr("AzureWebJobsStorage__tableServiceUri", "storageTableEndpoint")
    expect_expr("DataStorage__tableServiceUri", "storageTableEndpoint")
    expect_expr("DataStorage__queueServiceUri", "storageQueueEndpoint")
    expect_expr("KEY_VAULT_URL", "keyVaultUri")
    # Telemetry is switched on only when the connection string is set; the fleet view only with a
    # tenant id (empty: off).
    expect_expr("APPLICATIONINSIGHTS_CONNECTION_STRING", "applicationInsightsConnectionString")
    expect_expr("OPERATOR_TENANT_ID", "operatorTenantId")
    if settings.get("PYTHON_ENABLE_OPENTELEMETRY") != "true":
        violations.append(
            "PYTHON_ENABLE_OPENTELEMETRY must be 'true' (host.json telemetryMode OpenTelemetry)"
        )
    violations += _main_passes(
        infra,
        {
            "applicationInsightsConnectionString": "monitoring.outputs.connectionString",
            "operatorTenantId": "operatorTenantId",
        },
    )
    if settings.get("OAUTH_REDIRECT_URI") != "https://${site.properties.defaultHostName}/api/oauth/callback":
        violations.append(f"OAUTH_REDIRECT_URI is {settings.get('OAUTH_REDIRECT_URI')!r}")
    secret = settings.get("GRAPH_CLIENT_SECRET")
    if not (isinstance(secret, str) and secret.startswith("@Microsoft.KeyVault(SecretUri=${keyVaultUri}")):
        violations.append("GRAPH_CLIENT_SECRET must be a Key Vault reference into the app's vault")
    if settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING") != (
        "ClientId=${identityClientId};Authorization=AAD"
    ):
        violations.append("APPLICATIONINSIGHTS_AUTHENTICATION_STRING must use the identity (Entra ingestion)")
    for _, site in infra.declared("Microsoft.Web/sites"):
        ref = site.get("properties.keyVaultReferenceIdentity")
        if not (isinstance(ref, Expr) and ref.text == "identityId"):
            violations.append("the site's keyVaultReferenceIdentity must be the user-assigned identity")
    return violations


def _main_passes(infra: Infra, expected: dict[str, str]) -> list[str]:
    """What main.bicep hands the function app module for the given parameters."""
    module = infra.files["main.bicep"].modules.get("functionApp")
    params = module.body.get("params", {}) if module else {}
    return [
        f"main.bicep passes {name} as {params.get(name)!r}, expected {text}"
        for name, text in expected.items()
        if not (isinstance(params.get(name), Expr) and params[name].text == text)
    ]
