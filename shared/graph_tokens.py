"""Microsoft Graph access tokens: one msal confidential client per customer tenant.

The app registration is multi-tenant; each customer tenant has its own authority, so msal gets one
`ConfidentialClientApplication` per tenant, built once (its OpenID discovery runs off the event
loop) and kept with its token cache for the life of the worker.

msal (and requests under it) is imported when the first app is built, off the event loop: most
requests never call Graph, and a fresh worker should not pay for the import before one does.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from shared import telemetry
from shared.errors import BadRequest, UpstreamError, UpstreamUnavailable
from shared.observability import register_secret

if TYPE_CHECKING:
    import requests

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ENTRA = "entra"  # the peer of the token spans
_TENANT = re.compile(r"^[0-9a-zA-Z.-]{1,100}$")


class GraphTokens:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: SecretStr,
        authority_host: str,
        local_dev: bool,
        ca_bundle: str | None,
        timeout: float,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        register_secret(client_secret.get_secret_value(), app_wide=True)
        self._authority_host = authority_host.rstrip("/")
        self._local_dev = local_dev
        self._verify: str | bool = ca_bundle or True
        self._timeout = timeout
        self._apps: dict[str, Any] = {}
        self._app_locks: dict[str, asyncio.Lock] = {}

    async def app(self, tenant_id: str) -> Any:
        if not _TENANT.match(tenant_id):
            raise BadRequest("The tenant id is not valid.")
        app = self._apps.get(tenant_id)
        if app is not None:
            return app
        lock = self._app_locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            app = self._apps.get(tenant_id)
            if app is None:
                # Building the app runs OpenID discovery over the network: keep it off the event loop.
                with telemetry.client_span("GET entra discovery", ENTRA):
                    app = await asyncio.to_thread(self._build_app, tenant_id)
                self._apps[tenant_id] = app
            return app

    def _build_app(self, tenant_id: str) -> Any:
        import msal

        options: dict[str, Any] = {}
        if self._local_dev:
            # msal validates authorities against Microsoft's instance discovery, which cannot know a
            # local stand-in. In Azure both stay at their defaults.
            options = {"validate_authority": False, "instance_discovery": False}
        if isinstance(self._verify, str):
            options["http_client"] = _ca_pinned_session(self._verify, self._timeout)
        try:
            return msal.ConfidentialClientApplication(
                self._client_id,
                client_credential=self._client_secret.get_secret_value(),
                authority=f"{self._authority_host}/{tenant_id}",
                timeout=self._timeout,
                **options,
            )
        except ValueError as exc:  # OIDC discovery refused: Entra does not know the tenant
            raise UpstreamError("Microsoft Entra does not know this tenant.") from exc
        except OSError as exc:  # requests' connection errors are OSErrors
            raise UpstreamUnavailable("Microsoft Entra could not be reached.") from exc

    async def token(self, tenant_id: str) -> str:
        app = await self.app(tenant_id)
        try:
            with telemetry.client_span("POST entra token", ENTRA) as span:
                result: dict[str, Any] = await asyncio.to_thread(
                    app.acquire_token_for_client, scopes=[GRAPH_SCOPE]
                )
                if span is not None:  # msal answers from its cache or asks Entra
                    span.set_attribute("connector.from_cache", result.get("token_source") == "cache")
        except OSError as exc:
            raise UpstreamUnavailable("Microsoft Entra could not be reached.") from exc
        except ValueError as exc:
            raise UpstreamError("Microsoft Entra answered the token request unexpectedly.") from exc
        token = result.get("access_token")
        if isinstance(token, str):
            register_secret(token, tenant_id=tenant_id)
            return token
        error = str(result.get("error", "unknown_error"))
        if error in {"invalid_client", "unauthorized_client"}:
            raise UpstreamError(
                f"Microsoft Entra refused the app's Graph credentials for this tenant ({error}): check "
                "GRAPH_CLIENT_ID and GRAPH_CLIENT_SECRET and that the tenant has consented to the app."
            )
        raise UpstreamError(f"Microsoft Entra did not issue a Graph token for this tenant ({error}).")

    async def drop(self, tenant_id: str) -> None:
        app = await self.app(tenant_id)

        def drop() -> None:
            import msal  # loaded already: `app` was built with it

            cache = app.token_cache
            for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN, target=[GRAPH_SCOPE])):
                cache.remove_at(item)

        await asyncio.to_thread(drop)


def _ca_pinned_session(ca_bundle: str, timeout: float) -> requests.Session:
    """msal's HTTP client when a CA bundle is configured.

    msal's own `verify=` sets `Session.verify`, which requests silently overrides with the
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE environment variables (psf/requests#3829); many machines set
    those, so the local CA would be ignored. A per-request `verify` wins over the environment.
    """
    import requests

    class CaPinnedSession(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs.setdefault("verify", ca_bundle)
            kwargs.setdefault("timeout", timeout)
            return super().request(method, url, *args, **kwargs)

    return CaPinnedSession()
