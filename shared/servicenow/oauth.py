"""OAuth 2.0 against a ServiceNow instance, which is its own authorization server.

Facts that shape this (reference/servicenow-wire-facts.md section 1): the token endpoint takes
form-encoded bodies only, with the client credentials in the body; access tokens live 30 minutes
and refresh tokens 100 days; a refresh returns a new access token and keeps the refresh token
(so when none comes back we keep ours); a bad client, code or refresh token is answered
401 `{"error":"server_error","error_description":"access_denied"}`, which means the grant is dead:
retrying cannot help, an admin must re-authorize.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import datetime, timedelta
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import GrantRevoked, UpstreamError, UpstreamRejected
from shared.observability import register_secret
from shared.records import TokenSet
from shared.servicenow.transport import RetryPolicy, send_with_retries

logger = logging.getLogger(__name__)

REFRESH_TOKEN_LIFESPAN = timedelta(days=100)
DEFAULT_ACCESS_TOKEN_LIFESPAN_S = 1800
SCOPE = "useraccount"


def code_challenge(verifier: str) -> str:
    """PKCE S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(instance_url: str, *, client_id: str, redirect_uri: str, state: str, verifier: str) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": state,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{instance_url.rstrip('/')}/oauth_auth.do?{query}"


class ServiceNowOAuthClient:
    """`shared.ports.ServiceNowOAuthClient` over the instance's OAuth endpoints."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._http = http
        self._retry = retry or RetryPolicy()
        self._clock = clock

    def authorize_url(
        self, instance_url: str, *, client_id: str, redirect_uri: str, state: str, verifier: str
    ) -> str:
        return authorize_url(
            instance_url, client_id=client_id, redirect_uri=redirect_uri, state=state, verifier=verifier
        )

    async def exchange_code(
        self,
        instance_url: str,
        *,
        client_id: str,
        client_secret: SecretStr,
        code: str,
        redirect_uri: str,
        verifier: str,
        state: str,
    ) -> TokenSet:
        """Trade an authorization code for tokens. Sent once: a code cannot be used twice.

        Raises:
            UpstreamRejected: the instance refused the code or the client credentials.
            UpstreamUnavailable: the instance did not answer.
        """
        register_secret(code, verifier)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "client_secret": client_secret.get_secret_value(),
            "code_verifier": verifier,
            "state": state,
        }
        response = await self._post_token(instance_url, form, retry=False, what="code exchange")
        if response.status_code != 200:
            raise UpstreamRejected(_refusal("the authorization code", response))
        now = self._clock.now()
        return self._token_set(
            response, now, previous_refresh=None, refresh_expires_at=now + REFRESH_TOKEN_LIFESPAN
        )

    async def refresh(
        self, instance_url: str, *, client_id: str, client_secret: SecretStr, tokens: TokenSet
    ) -> TokenSet:
        """A new access token from the refresh token (which ServiceNow does not rotate).

        Raises:
            GrantRevoked: the refresh token or the client is no longer valid.
            UpstreamUnavailable: the instance did not answer.
        """
        form = {
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token.get_secret_value(),
            "client_id": client_id,
            "client_secret": client_secret.get_secret_value(),
        }
        response = await self._post_token(instance_url, form, retry=True, what="token refresh")
        if response.status_code in (400, 401, 403):
            raise GrantRevoked(_refusal("the refresh token", response))
        if response.status_code != 200:
            raise UpstreamError(f"ServiceNow answered the token refresh with HTTP {response.status_code}.")
        return self._token_set(
            response, self._clock.now(), previous_refresh=tokens.refresh_token,
            refresh_expires_at=tokens.refresh_token_expires_at,
        )  # fmt: skip

    async def revoke(self, instance_url: str, token: SecretStr) -> None:
        """Mark a token expired at the instance (no authentication needed). Best effort: logs, never raises."""
        url = f"{instance_url.rstrip('/')}/oauth_revoke_token.do"
        try:
            response = await send_with_retries(
                lambda: self._http.post(url, params={"token": token.get_secret_value()}),
                self._retry,
                what="token revoke",
                clock=self._clock,
            )
        except UpstreamError as exc:
            logger.warning("Could not revoke a ServiceNow token: %s", exc.message)
            return
        except Exception as exc:  # best effort, as promised: it must not fail a removal
            # The type only: a message may quote the URL, and the token is in its query.
            logger.warning("Could not revoke a ServiceNow token (%s)", type(exc).__name__)
            return
        if response.status_code >= 400:
            logger.warning("ServiceNow answered the token revoke with HTTP %d", response.status_code)

    async def _post_token(
        self, instance_url: str, form: dict[str, str], *, retry: bool, what: str
    ) -> httpx.Response:
        url = f"{instance_url.rstrip('/')}/oauth_token.do"
        return await send_with_retries(
            lambda: self._http.post(url, data=form), self._retry, what=what, retry=retry, clock=self._clock
        )

    def _token_set(
        self,
        response: httpx.Response,
        now: datetime,
        *,
        previous_refresh: SecretStr | None,
        refresh_expires_at: datetime,
    ) -> TokenSet:
        try:
            body = response.json()
            access = str(body["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError("ServiceNow's token response has no access token.") from exc
        refresh_value = body.get("refresh_token")
        if refresh_value:
            refresh = SecretStr(str(refresh_value))
        elif previous_refresh is not None:
            refresh = previous_refresh
        else:
            raise UpstreamError("ServiceNow's token response has no refresh token.")
        register_secret(access, refresh.get_secret_value())
        lifespan = _int(body.get("expires_in"), DEFAULT_ACCESS_TOKEN_LIFESPAN_S)
        return TokenSet(
            access_token=SecretStr(access),
            refresh_token=refresh,
            access_token_expires_at=now + timedelta(seconds=lifespan),
            refresh_token_expires_at=refresh_expires_at,
        )


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def _refusal(what: str, response: httpx.Response) -> str:
    # The error fields are fixed vocabulary (server_error, access_denied): safe to show.
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = ""
    if isinstance(body, dict):
        detail = f"{body.get('error', '')}/{body.get('error_description', '')}".strip("/")
    return f"ServiceNow refused {what} (HTTP {response.status_code}{': ' + detail if detail else ''})."
