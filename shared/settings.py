"""One typed settings object, read from the environment once.

In Azure the values are app settings; locally `localdev` loads local.settings(.sample).json into
the environment first, so the same names work everywhere. Environment variables always win.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import AliasChoices, Field, HttpUrl, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Every setting the app reads. `PORT` belongs to the local host and is not here."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=False)

    # Table Storage and queues for our data: a connection string locally, or service URIs with a
    # managed identity in Azure (`DataStorage__tableServiceUri`, `DataStorage__queueServiceUri`).
    data_storage: Annotated[str | None, NoDecode] = Field(default=None, validation_alias=_env("DataStorage"))
    data_storage_table_service_uri: str | None = Field(
        default=None, validation_alias=_env("DataStorage__tableServiceUri")
    )
    data_storage_queue_service_uri: str | None = Field(
        default=None, validation_alias=_env("DataStorage__queueServiceUri")
    )
    data_storage_client_id: str | None = Field(default=None, validation_alias=_env("DataStorage__clientId"))

    key_vault_url: HttpUrl = Field(validation_alias=_env("KEY_VAULT_URL"))
    # The CA bundle that the Key Vault, Entra and Graph clients trust; only the local stand-ins need it.
    local_ca_bundle: str | None = Field(default=None, validation_alias=_env("LOCAL_CA_BUNDLE"))
    azure_client_id: str | None = Field(default=None, validation_alias=_env("AZURE_CLIENT_ID"))

    servicenow_url_template: str = Field(
        default="https://{instance}.service-now.com", validation_alias=_env("SERVICENOW_URL_TEMPLATE")
    )
    oauth_redirect_uri: HttpUrl = Field(validation_alias=_env("OAUTH_REDIRECT_URI"))
    portal_url: HttpUrl = Field(validation_alias=_env("PORTAL_URL"))

    graph_base_url: HttpUrl = Field(
        default=HttpUrl("https://graph.microsoft.com"), validation_alias=_env("GRAPH_BASE_URL")
    )
    entra_authority_host: HttpUrl = Field(
        default=HttpUrl("https://login.microsoftonline.com"), validation_alias=_env("ENTRA_AUTHORITY_HOST")
    )
    graph_client_id: str | None = Field(default=None, validation_alias=_env("GRAPH_CLIENT_ID"))
    graph_client_secret: SecretStr | None = Field(default=None, validation_alias=_env("GRAPH_CLIENT_SECRET"))

    sync_schedule: str = Field(default="0 */5 * * * *", validation_alias=_env("SYNC_SCHEDULE"))

    local_dev: bool = Field(default=False, validation_alias=_env("LOCAL_DEV"))
    # Set to "True" by App Service when Easy Auth is on; the principal header is trusted only then.
    website_auth_enabled: bool = Field(default=False, validation_alias=_env("WEBSITE_AUTH_ENABLED"))

    @model_validator(mode="after")
    def _storage_is_configured(self) -> Settings:
        if not self.data_storage and not self.data_storage_table_service_uri:
            raise ValueError(
                "DataStorage is not configured: set DataStorage (a connection string) or "
                "DataStorage__tableServiceUri and DataStorage__queueServiceUri (managed identity)"
            )
        if self.data_storage_table_service_uri and not self.data_storage_queue_service_uri:
            raise ValueError("DataStorage__queueServiceUri must be set with DataStorage__tableServiceUri")
        if "{instance}" not in self.servicenow_url_template:
            raise ValueError("SERVICENOW_URL_TEMPLATE must contain {instance}")
        return self

    @property
    def principal_header_trusted(self) -> bool:
        """Easy Auth sets the principal header in Azure; locally the developer plays that part."""
        return self.website_auth_enabled or self.local_dev


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read from the environment on first use and kept for the process."""
    return Settings()
