"""A `shared.ports.ServiceNowOAuth` that plays only the refresh grant, for unit tests of the
services that refresh tokens (AccessTokens, diagnostics)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from pydantic import SecretStr

from shared.errors import GrantRevoked
from shared.ports import ServiceNowOAuth
from shared.records import TokenSet
from tests.fakes.clock import FakeClock


class FakeRefreshGrant:
    """Hands out numbered access tokens (`refreshed-1`, ...) valid 30 minutes, keeping the refresh
    token, which lives `refresh_lifetime` from the refresh. Records the refresh tokens used;
    `refuse` answers as ServiceNow does to a dead grant; `during_refresh` runs inside a refresh."""

    def __init__(self, clock: FakeClock, *, refresh_lifetime: timedelta = timedelta(days=100)) -> None:
        self.clock = clock
        self.refresh_lifetime = refresh_lifetime
        self.refreshed: list[str] = []  # the refresh tokens used, in order
        self.refuse = False
        self.during_refresh: Callable[[], Awaitable[None]] | None = None

    def authorize_url(
        self, instance_url: str, *, client_id: str, redirect_uri: str, state: str, verifier: str
    ) -> str:
        raise AssertionError("not used here")

    async def exchange_code(self, instance_url: str, **kwargs: object) -> TokenSet:
        raise AssertionError("not used here")

    async def refresh(
        self, instance_url: str, *, client_id: str, client_secret: SecretStr, tokens: TokenSet
    ) -> TokenSet:
        self.refreshed.append(tokens.refresh_token.get_secret_value())
        if self.during_refresh is not None:
            await self.during_refresh()
        if self.refuse:
            raise GrantRevoked("ServiceNow refused the refresh token (HTTP 401: server_error/access_denied).")
        return TokenSet(
            access_token=SecretStr(f"refreshed-{len(self.refreshed)}"),
            refresh_token=tokens.refresh_token,
            access_token_expires_at=self.clock.now() + timedelta(minutes=30),
            refresh_token_expires_at=self.clock.now() + self.refresh_lifetime,
        )

    async def revoke(self, instance_url: str, token: SecretStr) -> None:
        return None


def _conforms(grant: FakeRefreshGrant) -> ServiceNowOAuth:
    return grant
