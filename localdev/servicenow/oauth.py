"""The instance as an OAuth 2.0 authorization server: clients, codes, grants and tokens.

Pure state and rules, no HTTP; :mod:`.oauth_routes` puts the wire format on top. Rules:

- access tokens live 1800 s, refresh tokens 8,640,000 s (facts L40);
- the refresh grant issues a new access token and hands back the *same* refresh token, whose
  expiry is not extended (facts L42-46);
- codes are single-use, expire after :data:`CODE_LIFETIME_SECONDS`, and are bound to the client,
  the ``redirect_uri`` and the PKCE challenge (S256, facts L8, L13);
- revoking a refresh token ends its grant, so its access tokens stop working too (facts L53).

Each consent creates a grant; the grant stands for "the user who clicked Allow" and is what the
per-user rate limit counts against.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .clock import Clock

ACCESS_TOKEN_LIFETIME_SECONDS = 1800
REFRESH_TOKEN_LIFETIME_SECONDS = 8_640_000
CODE_LIFETIME_SECONDS = 60
TOKEN_SCOPE = "useraccount"
DEFAULT_CLIENTS: Mapping[str, str] = {"dev-client-id": "dev-client-secret"}
DEFAULT_USER = "admin"


def new_token() -> str:
    """An opaque URL-safe token of 86 characters, like the instance's (facts L38)."""
    return secrets.token_urlsafe(64)


def s256_challenge(verifier: str) -> str:
    """base64url(SHA-256(verifier)) without padding (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    expires_at: datetime
    code_challenge: str | None
    used: bool = False


@dataclass
class AccessToken:
    token: str
    grant_id: str
    expires_at: datetime
    revoked: bool = False


@dataclass
class Grant:
    """What one consent produced: a refresh token and the access tokens minted from it."""

    grant_id: str
    client_id: str
    user: str
    refresh_token: str
    refresh_expires_at: datetime
    revoked: bool = False
    access_tokens: list[AccessToken] = field(default_factory=list)


@dataclass(frozen=True)
class TokenSet:
    access_token: AccessToken
    grant: Grant


class OAuthError(Exception):
    """Any token-endpoint failure; the wire answer is always the same 401 body (facts L48-49)."""


class OAuthServer:
    """Registered clients plus every code, grant and token the instance has issued."""

    def __init__(self, clock: Clock, clients: Mapping[str, str] | None = None) -> None:
        self._clock = clock
        self.clients: dict[str, str] = dict(clients if clients is not None else DEFAULT_CLIENTS)
        self._codes: dict[str, AuthorizationCode] = {}
        self._grants: dict[str, Grant] = {}
        self._by_refresh: dict[str, Grant] = {}
        self._by_access: dict[str, AccessToken] = {}

    def reset(self) -> None:
        """Forget every code, grant and token; registered clients stay."""
        self._codes.clear()
        self._grants.clear()
        self._by_refresh.clear()
        self._by_access.clear()

    @property
    def grants(self) -> list[Grant]:
        return list(self._grants.values())

    def is_client(self, client_id: str) -> bool:
        return client_id in self.clients

    def _check_client(self, client_id: str, client_secret: str) -> None:
        expected = self.clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected.encode(), client_secret.encode()):
            raise OAuthError("bad client credentials")

    def issue_code(self, *, client_id: str, redirect_uri: str, scope: str, code_challenge: str | None) -> str:
        code = new_token()
        self._codes[code] = AuthorizationCode(
            code=code,
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            expires_at=self._clock.now() + timedelta(seconds=CODE_LIFETIME_SECONDS),
            code_challenge=code_challenge,
        )
        return code

    def exchange_code(
        self,
        *,
        code: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        code_verifier: str | None,
    ) -> TokenSet:
        """authorization_code grant: check client, code binding, expiry, single use and PKCE."""
        self._check_client(client_id, client_secret)
        issued = self._codes.get(code)
        if issued is None or issued.used:
            raise OAuthError("unknown or replayed code")
        issued.used = True  # a failed attempt burns the code too: no guessing the verifier
        if issued.client_id != client_id or issued.redirect_uri != redirect_uri:
            raise OAuthError("code bound to another client or redirect_uri")
        if self._clock.now() >= issued.expires_at:
            raise OAuthError("code expired")
        if issued.code_challenge is not None and (
            not code_verifier or not hmac.compare_digest(s256_challenge(code_verifier), issued.code_challenge)
        ):
            raise OAuthError("PKCE verification failed")
        grant = Grant(
            grant_id=secrets.token_hex(16),
            client_id=client_id,
            user=DEFAULT_USER,
            refresh_token=new_token(),
            refresh_expires_at=self._clock.now() + timedelta(seconds=REFRESH_TOKEN_LIFETIME_SECONDS),
        )
        self._grants[grant.grant_id] = grant
        self._by_refresh[grant.refresh_token] = grant
        return TokenSet(self._mint_access(grant), grant)

    def refresh(self, *, refresh_token: str, client_id: str, client_secret: str) -> TokenSet:
        """refresh_token grant: a new access token, the same refresh token (facts L42-46)."""
        self._check_client(client_id, client_secret)
        grant = self._by_refresh.get(refresh_token)
        if grant is None or grant.client_id != client_id or not self._grant_alive(grant):
            raise OAuthError("bad refresh token")
        return TokenSet(self._mint_access(grant), grant)

    def _mint_access(self, grant: Grant) -> AccessToken:
        token = AccessToken(
            token=new_token(),
            grant_id=grant.grant_id,
            expires_at=self._clock.now() + timedelta(seconds=ACCESS_TOKEN_LIFETIME_SECONDS),
        )
        grant.access_tokens.append(token)
        self._by_access[token.token] = token
        return token

    def _grant_alive(self, grant: Grant) -> bool:
        return not grant.revoked and self._clock.now() < grant.refresh_expires_at

    def authenticate(self, access_token: str) -> Grant | None:
        """The grant behind a bearer token, or None if unknown, expired or revoked."""
        token = self._by_access.get(access_token)
        if token is None or token.revoked or self._clock.now() >= token.expires_at:
            return None
        grant = self._grants[token.grant_id]
        return grant if self._grant_alive(grant) else None

    def revoke(self, token: str) -> bool:
        """``/oauth_revoke_token.do``: a refresh token ends its grant; an access token just itself."""
        grant = self._by_refresh.get(token)
        if grant is not None:
            grant.revoked = True
            for minted in grant.access_tokens:
                minted.revoked = True
            return True
        access = self._by_access.get(token)
        if access is not None:
            access.revoked = True
            return True
        return False

    def expire_access_tokens(self, token: str | None = None) -> int:
        """Control API: make one or every access token expired now. Returns how many."""
        past = self._clock.now() - timedelta(seconds=1)
        if token is None:
            targets = list(self._by_access.values())
        else:
            targets = [self._by_access[token]] if token in self._by_access else []
        for access in targets:
            access.expires_at = min(access.expires_at, past)
        return len(targets)

    def revoke_refresh_tokens(self, token: str | None = None) -> int:
        """Control API: revoke one or every refresh token (and so their access tokens)."""
        if token is not None:
            return 1 if token in self._by_refresh and self.revoke(token) else 0
        for grant in self._grants.values():
            self.revoke(grant.refresh_token)
        return len(self._grants)

    def seconds_left(self, moment: datetime) -> int:
        """Whole seconds until ``moment``, rounded down: a fresh token reports 1799 (facts L38)."""
        return max(0, int((moment - self._clock.now()).total_seconds()))
