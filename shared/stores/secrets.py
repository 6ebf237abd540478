"""The secret store: each tenant's ServiceNow client secret and OAuth tokens, kept in Key Vault.

`KeyVaultSecretStore` implements the `shared.ports.SecretStore` port on the async `azure-keyvault-secrets` client. Reads are cached in memory for a short TTL so that a
request path does not hit Key Vault every time (Key Vault throttles per vault), and writes
invalidate the cache. Secret values are registered with the log redactor as soon as we see them
and never appear in exception messages.

Key Vault names allow only `[0-9a-zA-Z-]`, so a tenant's secrets are `snow-<tenant>-client-secret`
and `snow-<tenant>-tokens` (a JSON value).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import AsyncRetryPolicy
from pydantic import SecretStr, ValidationError

from shared.errors import AppError, BadRequest, ConnectionNotReady, UpstreamError, UpstreamUnavailable
from shared.http_retry import reported_retry_after, retry_after_seconds
from shared.observability import register_secret
from shared.records import AppKey, TokenSet
from shared.settings import Settings
from shared.stores.ttl_cache import TtlCache

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.keyvault.secrets import KeyVaultSecret
    from azure.keyvault.secrets.aio import SecretClient

logger = logging.getLogger(__name__)

_TENANT_PATTERN = re.compile(r"^[0-9a-zA-Z-]{1,100}$")
_RETRYABLE_STATUSES = (408, 429, 500, 502, 503, 504)
DEFAULT_CACHE_TTL = 60.0
LOCAL_DEV_TOKEN = "local-dev-token"  # not a secret: the Key Vault stand-in accepts any bearer token


# --- naming and (de)serialisation, shared with the test fake ------------------------------------------


def client_secret_name(tenant_id: str) -> str:
    return f"snow-{_checked_tenant(tenant_id)}-client-secret"


def tokens_name(tenant_id: str) -> str:
    return f"snow-{_checked_tenant(tenant_id)}-tokens"


def app_key_name(name: str) -> str:
    if not _TENANT_PATTERN.match(name):
        raise ValueError(f"not a valid key name: {name!r}")
    return f"app-{name}"


def new_app_key() -> str:
    return secrets.token_urlsafe(32)


def _checked_tenant(tenant_id: str) -> str:
    if not _TENANT_PATTERN.match(tenant_id):
        raise BadRequest("The tenant id is not valid.")
    return tenant_id


def tokens_to_json(tokens: TokenSet) -> str:
    return json.dumps(
        {
            "access_token": tokens.access_token.get_secret_value(),
            "refresh_token": tokens.refresh_token.get_secret_value(),
            "access_token_expires_at": tokens.access_token_expires_at.isoformat(),
            "refresh_token_expires_at": tokens.refresh_token_expires_at.isoformat(),
            "instance_url": tokens.instance_url,
            "client_id": tokens.client_id,
            "authorized_at": tokens.authorized_at.isoformat() if tokens.authorized_at else None,
        }
    )


def tokens_from_json(text: str) -> TokenSet:
    try:
        tokens = TokenSet.model_validate_json(text)
    except ValidationError as exc:
        # The pydantic error would quote the input, which is the secret: keep only the field names.
        fields = ", ".join(".".join(str(p) for p in error["loc"]) for error in exc.errors())
        raise UpstreamError(f"The stored ServiceNow tokens are unreadable (fields: {fields}).") from None
    register_tokens(tokens)
    return tokens


def register_tokens(tokens: TokenSet, tenant_id: str | None = None) -> None:
    register_secret(
        tokens.access_token.get_secret_value(), tokens.refresh_token.get_secret_value(), tenant_id=tenant_id
    )


# --- the Key Vault adapter -------------------------------------------------------------------------


class StaticTokenCredential:
    """A credential for the local Key Vault stand-in, which accepts any bearer token.

    Only `LOCAL_DEV=true` uses it; in Azure the app authenticates with its managed identity.
    """

    def __init__(self, token: str = LOCAL_DEV_TOKEN) -> None:
        self._token = token

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


class KeyVaultSecretStore:
    """`SecretStore` on Azure Key Vault, through the async `SecretClient`.

    Parameters
    ----------
    client:
        A configured `azure.keyvault.secrets.aio.SecretClient` (see `from_settings`).
    cache_ttl:
        Seconds a read value is served from memory. Writes and deletes made through this instance
        invalidate at once; another instance may serve its cached value for up to `cache_ttl`.
    credential:
        Closed with the store when given (the store owns the credential `from_settings` made).
    """

    def __init__(
        self,
        client: SecretClient,
        *,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
        credential: AsyncTokenCredential | StaticTokenCredential | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self._client = client
        self._credential = credential
        self._cache: TtlCache[str] = TtlCache(cache_ttl, clock=clock)
        self._app_keys: dict[tuple[str, str], str] = {}
        self._poll_interval = poll_interval

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        retry_total: int = 4,
        retry_backoff_factor: float = 0.5,
        retry_backoff_max: float = 8.0,
        connection_timeout: float = 5.0,
        read_timeout: float = 20.0,
    ) -> KeyVaultSecretStore:
        """Build the adapter the app uses: managed identity in Azure, a static token locally."""
        from azure.keyvault.secrets.aio import SecretClient

        credential: AsyncTokenCredential | StaticTokenCredential
        if settings.local_dev:
            credential = StaticTokenCredential()
        else:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
        # Explicit so that nobody has to know azure-core's defaults: throttling (429) and
        # unavailability (503) are retried with exponential backoff, honouring Retry-After.
        retry_policy = AsyncRetryPolicy(
            retry_total=retry_total,
            retry_backoff_factor=retry_backoff_factor,
            retry_backoff_max=retry_backoff_max,
            retry_on_status_codes=list(_RETRYABLE_STATUSES),
        )
        options: dict[str, Any] = {
            "retry_policy": retry_policy,
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
            # The stand-in's host is 127.0.0.1, not *.vault.azure.net; in Azure the check stays on,
            # so a token is never sent to a host that does not belong to the challenge's resource.
            "verify_challenge_resource": not settings.local_dev,
        }
        if settings.local_ca_bundle:
            options["connection_verify"] = settings.local_ca_bundle
        client = SecretClient(str(settings.key_vault_url), credential, **options)
        return cls(client, cache_ttl=cache_ttl, credential=credential)

    # --- the port ---------------------------------------------------------------------------

    async def get_client_secret(self, tenant_id: str, *, fresh: bool = False) -> SecretStr | None:
        value = await self._read(client_secret_name(tenant_id), fresh=fresh)
        return SecretStr(value) if value is not None else None

    async def set_client_secret(self, tenant_id: str, client_secret: SecretStr) -> None:
        value = client_secret.get_secret_value()
        register_secret(value, tenant_id=tenant_id)
        await self._write(client_secret_name(tenant_id), value, "text/plain", tenant_id)

    async def get_tokens(self, tenant_id: str, *, fresh: bool = False) -> TokenSet | None:
        value = await self._read(tokens_name(tenant_id), fresh=fresh)
        return tokens_from_json(value) if value is not None else None

    async def set_tokens(self, tenant_id: str, tokens: TokenSet, *, restore_deleted: bool = True) -> None:
        register_tokens(tokens, tenant_id)
        await self._write(
            tokens_name(tenant_id), tokens_to_json(tokens), "application/json", tenant_id, restore_deleted
        )

    async def delete_tenant(self, tenant_id: str) -> None:
        for name in (client_secret_name(tenant_id), tokens_name(tenant_id)):
            self._cache.invalidate(name)
            await self._delete_and_purge(name)
            self._cache.invalidate(name)

    async def app_key(self, name: str, version: str | None = None) -> AppKey:
        secret_name = app_key_name(name)
        if version is None:
            # The latest version id is cached briefly; the value of each version for good (immutable).
            version = self._cache.get(secret_name) or await self._latest_app_key_version(secret_name)
        value = self._app_keys.get((secret_name, version))
        if value is None:
            try:
                secret = await self._client.get_secret(secret_name, version)
            except AzureError as exc:
                raise _mapped(exc, "read the app key from") from exc
            value = self._remember_app_key(secret_name, secret)[1]
        return AppKey(version, SecretStr(value))

    async def _latest_app_key_version(self, secret_name: str) -> str:
        generation = self._cache.generation(secret_name)
        try:
            try:
                secret = await self._client.get_secret(secret_name)
            except ResourceNotFoundError:
                # First use. Two instances may create it at once: each state records the version
                # it was derived with, so both keys stay usable.
                await self._write(secret_name, new_app_key(), "text/plain", "app")
                secret = await self._client.get_secret(secret_name)
        except AzureError as exc:
            raise _mapped(exc, "read the app key from") from exc
        version, _ = self._remember_app_key(secret_name, secret)
        self._cache.put_if_current(secret_name, version, generation)
        return version

    def _remember_app_key(self, secret_name: str, secret: KeyVaultSecret) -> tuple[str, str]:
        version, value = secret.properties.version, secret.value
        if not version or value is None:
            raise UpstreamError("Key Vault returned the app key without a version or value.")
        register_secret(value, app_wide=True)
        self._app_keys[(secret_name, version)] = value
        return version, value

    async def aclose(self) -> None:
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    # --- primitives -------------------------------------------------------------------------

    async def _read(self, name: str, *, fresh: bool) -> str | None:
        if not fresh:
            cached = self._cache.get(name)
            if cached is not None:
                return cached
        generation = self._cache.generation(name)
        try:
            secret = await self._client.get_secret(name)
        except ResourceNotFoundError:
            logger.debug("Key Vault has no secret %s", name)
            return None  # absent is an answer, but not one worth caching: another instance may write it
        except AzureError as exc:
            raise _mapped(exc, "read a secret from") from exc
        value = secret.value
        if value is None:
            return None
        register_secret(value)
        self._cache.put_if_current(name, value, generation)
        return value

    async def _write(
        self, name: str, value: str, content_type: str, tenant_id: str, restore_deleted: bool = True
    ) -> None:
        self._cache.invalidate(name)
        tags = {"tenant": tenant_id, "owner": "servicenow-connector"}
        try:
            try:
                await self._client.set_secret(name, value, content_type=content_type, tags=tags)
            except ResourceExistsError as exc:
                # 409: the name is soft-deleted (the tenant was removed under purge protection, or a
                # purge is still running). Bring it back, then write the new value as its latest version.
                if not restore_deleted:
                    raise ConnectionNotReady("The ServiceNow connection was removed.") from exc
                await self._recover(name)
                await self._client.set_secret(name, value, content_type=content_type, tags=tags)
        except AzureError as exc:
            raise _mapped(exc, "write a secret to") from exc
        finally:
            # A read that raced with this write must not be served from cache either.
            self._cache.invalidate(name)
        logger.info("Stored secret %s in Key Vault", name)

    async def _recover(self, name: str) -> None:
        try:
            await self._client.recover_deleted_secret(name, _polling_interval=self._poll_interval)
        except ResourceNotFoundError:
            # Neither live nor recoverable: a purge is under way. Give it a moment before the retry.
            await asyncio.sleep(self._poll_interval)

    async def _delete_and_purge(self, name: str) -> None:
        try:
            await self._client.delete_secret(name, _polling_interval=self._poll_interval)
        except ResourceNotFoundError:
            pass  # never written, or deleted before: a soft-deleted copy may still need purging
        except AzureError as exc:
            raise _mapped(exc, "delete a secret from") from exc
        try:
            await self._client.purge_deleted_secret(name)
        except ResourceNotFoundError:
            return
        except HttpResponseError as exc:
            if exc.status_code != 403:
                raise _mapped(exc, "purge a secret from") from exc
            # Purge protection (or a role without purge): the secret stays soft-deleted and Key Vault
            # removes it when the retention period ends. Deleting the connection still succeeded.
            logger.warning(
                "Key Vault did not allow purging %s; it stays soft-deleted until retention ends", name
            )
        except AzureError as exc:
            raise _mapped(exc, "purge a secret from") from exc
        else:
            logger.info("Deleted and purged secret %s", name)


def _mapped(exc: AzureError, action: str) -> AppError:
    """Our error for an SDK failure. Never quotes the SDK's message: it may echo a response body."""
    if isinstance(exc, ClientAuthenticationError):
        return UpstreamError(
            f"Key Vault refused to let the app {action} it: check the app identity's role on the vault."
        )
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return UpstreamUnavailable(f"Could not {action} Key Vault: the vault did not answer.")
    if isinstance(exc, HttpResponseError) and exc.status_code in _RETRYABLE_STATUSES:
        return UpstreamUnavailable(
            f"Could not {action} Key Vault: it is throttling or unavailable (HTTP {exc.status_code}).",
            retry_after=_retry_after(exc),
        )
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    return UpstreamError(f"Could not {action} Key Vault (HTTP {status or 'error'}).")


def _retry_after(exc: HttpResponseError) -> int:
    """Key Vault's own Retry-After on the answer azure-core gave up on, else 30 s.

    azure-core's retry policy honours the header while it retries, but does not hand it on with
    the error; our caller still needs it for the Retry-After of our own 503.
    """
    hinted = retry_after_seconds(getattr(exc.response, "headers", None) or {})
    return reported_retry_after(hinted) if hinted is not None else 30
