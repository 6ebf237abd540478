"""One typed settings object, read from the environment once.

In Azure the values are app settings; locally `localdev` loads local.settings(.sample).json into
the environment first, so the same names work everywhere. Environment variables always win.

Settings that fail validation make `get_settings` raise `Misconfigured`, which names each setting
and its rule but never a value (a value may be a secret): every endpoint then answers 503
`misconfigured`, `/api/health` says which settings are wrong, and `make run` refuses to start.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, HttpUrl, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import Misconfigured
from shared.untrusted import origin_of


class Settings(BaseSettings):
    """Every setting the app reads. `PORT` belongs to the local host and is not here."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=False)

    # Table Storage and queues for our data: a connection string locally, or service URIs with a
    # managed identity in Azure (`DataStorage__tableServiceUri`, `DataStorage__queueServiceUri`).
    data_storage: Annotated[str | None, NoDecode] = Field(default=None, validation_alias="DataStorage")
    data_storage_table_service_uri: str | None = Field(
        default=None, validation_alias="DataStorage__tableServiceUri"
    )
    data_storage_queue_service_uri: str | None = Field(
        default=None, validation_alias="DataStorage__queueServiceUri"
    )
    data_storage_client_id: str | None = Field(default=None, validation_alias="DataStorage__clientId")

    key_vault_url: HttpUrl = Field(validation_alias="KEY_VAULT_URL")
    # The CA bundle that the Key Vault, Entra and Graph clients trust; only the local stand-ins need it.
    local_ca_bundle: str | None = Field(default=None, validation_alias="LOCAL_CA_BUNDLE")
    azure_client_id: str | None = Field(default=None, validation_alias="AZURE_CLIENT_ID")

    servicenow_url_template: str = Field(
        default="https://{instance}.service-now.com", validation_alias="SERVICENOW_URL_TEMPLATE"
    )
    oauth_redirect_uri: HttpUrl = Field(validation_alias="OAUTH_REDIRECT_URI")
    portal_url: HttpUrl = Field(validation_alias="PORTAL_URL")

    graph_base_url: HttpUrl = Field(
        default=HttpUrl("https://graph.microsoft.com"), validation_alias="GRAPH_BASE_URL"
    )
    entra_authority_host: HttpUrl = Field(
        default=HttpUrl("https://login.microsoftonline.com"), validation_alias="ENTRA_AUTHORITY_HOST"
    )
    graph_client_id: str | None = Field(default=None, validation_alias="GRAPH_CLIENT_ID")
    graph_client_secret: SecretStr | None = Field(default=None, validation_alias="GRAPH_CLIENT_SECRET")

    local_dev: bool = Field(default=False, validation_alias="LOCAL_DEV")
    # Set to "True" by App Service when Easy Auth is on; the principal header is trusted only then.
    website_auth_enabled: bool = Field(default=False, validation_alias="WEBSITE_AUTH_ENABLED")
    # Origins (besides the app's own) whose web pages may send state-changing requests; comma-
    # separated. Unset or empty: PORTAL_URL's origin, plus http://localhost:3000 when LOCAL_DEV.
    cors_allowed_origins: str | None = Field(default=None, validation_alias="CORS_ALLOWED_ORIGINS")
    # How long after a ticket closes Secure Score may take to show the work before the ticket is
    # flagged `closedWithoutRemediation` (Microsoft says 24-48 hours; administrators see up to 7 days).
    remediation_grace_days: float = Field(default=7.0, gt=0, le=90, validation_alias="REMEDIATION_GRACE_DAYS")
    # The operator's own Entra tenant: only its users' Connector.Operator role is honoured (the
    # fleet view of every tenant's connection). Unset or empty: nobody holds that role.
    operator_tenant_id: str | None = Field(default=None, validation_alias="OPERATOR_TENANT_ID")
    # Application Insights: traces and metrics go there only when set (docs/telemetry.md).
    applicationinsights_connection_string: SecretStr | None = Field(
        default=None, validation_alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )

    @field_validator("servicenow_url_template")
    @classmethod
    def _template_names_the_instance(cls, template: str) -> str:
        if "{instance}" not in template:
            raise ValueError("must contain {instance}")
        try:
            example = template.format(instance="contoso")
        except (KeyError, IndexError, ValueError):
            raise ValueError("must contain {instance} and no other {...} placeholder") from None
        if not _is_http_url(example):
            raise ValueError("must be an http(s) URL with a host, such as https://{instance}.service-now.com")
        return template

    @field_validator("data_storage")
    @classmethod
    def _is_a_connection_string(cls, value: str | None) -> str | None:
        if value is None:
            return None
        pairs = {key.strip().lower() for key, sep, _ in (p.partition("=") for p in value.split(";")) if sep}
        if not pairs & {"accountname", "tableendpoint", "usedevelopmentstorage"}:
            raise ValueError(
                "must be a Storage connection string (AccountName=...;AccountKey=...;"
                "TableEndpoint=...;QueueEndpoint=..., or UseDevelopmentStorage=true)"
            )
        return value

    @field_validator("data_storage_table_service_uri", "data_storage_queue_service_uri")
    @classmethod
    def _is_a_service_uri(cls, value: str | None) -> str | None:
        if value is not None and not _is_http_url(value):
            raise ValueError(
                "must be the service's https URL, such as https://<account>.table.core.windows.net"
            )
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _lists_origins(cls, value: str | None) -> str | None:
        if value is not None and any(origin_of(item) is None for item in _listed(value)):
            raise ValueError("must list origins such as https://portal.example.com, separated by commas")
        return value

    @field_validator("operator_tenant_id")
    @classmethod
    def _is_a_tenant_id(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            raise ValueError("must be a tenant id (a GUID), or empty to turn the fleet view off") from None

    @model_validator(mode="after")
    def _storage_is_configured(self) -> Settings:
        if not self.data_storage and not self.data_storage_table_service_uri:
            raise ValueError(
                "DataStorage: not configured; set DataStorage (a connection string) or "
                "DataStorage__tableServiceUri and DataStorage__queueServiceUri (managed identity)"
            )
        if self.data_storage_table_service_uri and not self.data_storage_queue_service_uri:
            raise ValueError("DataStorage__queueServiceUri: must be set with DataStorage__tableServiceUri")
        return self

    @property
    def principal_header_trusted(self) -> bool:
        """Easy Auth sets the principal header in Azure; locally the developer plays that part."""
        return self.website_auth_enabled or self.local_dev

    @property
    def allowed_origins(self) -> frozenset[str]:
        """The origins of CORS_ALLOWED_ORIGINS (or its default), normalised by `origin_of`."""
        listed = _listed(self.cors_allowed_origins or "")
        if not listed:
            listed = [str(self.portal_url), *(["http://localhost:3000"] if self.local_dev else [])]
        return frozenset(origin for item in listed if (origin := origin_of(item)))


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read from the environment on first use and kept for the process.

    Raises:
        Misconfigured: a setting is missing or breaks its rule (read again on the next call).
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise Misconfigured(_problems(exc)) from None


def settings_problems() -> list[str]:
    """What is wrong with the environment's settings now, one line per setting ("NAME: rule");
    empty when none. Reads afresh and caches nothing (the local host checks before it starts)."""
    try:
        Settings()
    except ValidationError as exc:
        return _problems(exc)
    return []


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for detail in error.errors(include_input=False, include_url=False, include_context=False):
        name = ".".join(str(part) for part in detail["loc"])
        message = str(detail["msg"]).removeprefix("Value error, ")
        problems.append(f"{name}: {message}" if name else message)
    return problems
