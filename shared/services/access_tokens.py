"""Each tenant's ServiceNow access token: from memory while it is valid, else Key Vault, else a refresh.

Tokens are cached per grant (`Connection.grant`: tenant, instance, client and the time of the
authorization), so a warm worker never sends the token of a removed, re-pointed or re-authorized
connection: the next read of the row names another grant, and the cache misses.

Creating a ticket must not read Key Vault when a valid token is in memory, and twenty requests that
all find the token expired (or all get a 401) must cause one refresh, not twenty: refreshes are
single-flight per tenant. A dead grant flips the connection to `reauthorization_required`, so
the timer stops trying until an admin re-authorizes.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from pydantic import SecretStr

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import ConnectionNotReady, GrantRevoked, ReauthorizationRequired
from shared.models import ConnectionStatus
from shared.ports import ConnectionStore, SecretStore, ServiceNowOAuth
from shared.records import Connection, GrantKey, TokenSet

logger = logging.getLogger(__name__)

# Treat a token as expired a little early: it must survive the request it is used for.
EXPIRY_MARGIN = timedelta(minutes=2)


class AccessTokens:
    def __init__(
        self,
        *,
        secrets: SecretStore,
        oauth: ServiceNowOAuth,
        connections: ConnectionStore,
        clock: Clock = SYSTEM_CLOCK,
        margin: timedelta = EXPIRY_MARGIN,
    ) -> None:
        self._secrets = secrets
        self._oauth = oauth
        self._connections = connections
        self._clock = clock
        self._margin = margin
        self._cache: dict[GrantKey, TokenSet] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def access_token(self, connection: Connection) -> SecretStr:
        """A valid access token for the tenant's instance.

        Raises:
            ConnectionNotReady: the tenant has no token set (never authorized).
            ReauthorizationRequired: the refresh token is dead; an admin must re-authorize.
            UpstreamUnavailable: Key Vault or ServiceNow did not answer.
        """
        cached = self._cache.get(connection.grant)
        if cached is not None and self._usable(cached, self._margin):
            return cached.access_token
        async with self._lock(connection.tenant_id):
            tokens = await self._current(connection, minimum=self._margin, rejected=None)
            return tokens.access_token

    async def after_rejection(self, connection: Connection, rejected: SecretStr) -> SecretStr:
        """ServiceNow refused `rejected` (401): a newer token, refreshing unless someone already did."""
        async with self._lock(connection.tenant_id):
            tokens = await self._current(connection, minimum=self._margin, rejected=rejected)
            return tokens.access_token

    async def refresh_if_expiring(self, connection: Connection, within: timedelta) -> TokenSet:
        """The timer's refresh: make sure the access token outlives `within`."""
        async with self._lock(connection.tenant_id):
            return await self._current(connection, minimum=within, rejected=None)

    def forget(self, tenant_id: str) -> None:
        for key in [key for key in self._cache if key[0] == tenant_id]:
            del self._cache[key]

    async def _current(
        self, connection: Connection, *, minimum: timedelta, rejected: SecretStr | None
    ) -> TokenSet:
        cached = self._cache.get(connection.grant)
        if cached is not None and self._good(cached, minimum, rejected):
            return cached  # another request refreshed while this one waited for the lock
        stored = await self._secrets.get_tokens(connection.tenant_id, fresh=True)
        if stored is None:
            raise ConnectionNotReady("ServiceNow has not been authorized for this tenant yet.")
        if not stored.belongs_to(connection):
            # Re-authorized or pointed elsewhere since `connection` was read: its tokens must not
            # be sent to this connection's instance, nor its refresh token to the old one.
            raise ConnectionNotReady("The ServiceNow connection changed while this request ran. Try again.")
        if self._good(stored, minimum, rejected):
            self._cache[connection.grant] = stored  # another instance refreshed, or a cold start
            return stored
        return await self._refresh(connection, stored)

    def _good(self, tokens: TokenSet, minimum: timedelta, rejected: SecretStr | None) -> bool:
        return self._usable(tokens, minimum) and not _same(tokens.access_token, rejected)

    async def _refresh(self, connection: Connection, tokens: TokenSet) -> TokenSet:
        client_secret = await self._secrets.get_client_secret(connection.tenant_id)
        if client_secret is None:
            raise ConnectionNotReady("No ServiceNow client secret is stored for this tenant.")
        try:
            refreshed = await self._oauth.refresh(
                connection.instance_url,
                client_id=connection.client_id,
                client_secret=client_secret,
                tokens=tokens,
            )
            refreshed = refreshed.for_grant(connection)
        except GrantRevoked as exc:
            self.forget(connection.tenant_id)
            await self._mark_reauthorization_required(connection, exc.message)
            raise ReauthorizationRequired() from exc
        current = await self._connections.get(connection.tenant_id)
        if current is None or current.grant != connection.grant:
            # Removed or pointed elsewhere while we refreshed: these tokens belong to nobody now.
            raise ConnectionNotReady("The ServiceNow connection changed while its token was refreshed.")
        # Never resurrect secrets that a concurrent DELETE /api/provisioning soft-deleted.
        await self._secrets.set_tokens(connection.tenant_id, refreshed, restore_deleted=False)
        self._cache[connection.grant] = refreshed
        expiry = {
            "access_token_expires_at": refreshed.access_token_expires_at,
            "refresh_token_expires_at": refreshed.refresh_token_expires_at,
            "updated_at": self._clock.now(),
        }
        await self._connections.update(
            connection.tenant_id, lambda row: expiry if row.grant == connection.grant else {}
        )
        logger.info(
            "Refreshed the ServiceNow access token (valid until %s)", refreshed.access_token_expires_at
        )
        return refreshed

    async def _mark_reauthorization_required(self, connection: Connection, reason: str) -> None:
        logger.warning("ServiceNow grant is no longer valid: %s", reason)
        broken = {
            "status": ConnectionStatus.REAUTHORIZATION_REQUIRED,
            "last_error": f"{reason} An admin must re-authorize the connection.",
            "updated_at": self._clock.now(),
        }

        def mark(row: Connection) -> dict[str, object]:
            # Only the grant that failed: a re-authorization that landed meanwhile stays connected.
            return broken if row.is_same_live_grant(connection) else {}

        await self._connections.update(connection.tenant_id, mark)

    def _usable(self, tokens: TokenSet, minimum: timedelta) -> bool:
        return tokens.access_token_expires_at - minimum > self._clock.now()

    def _lock(self, tenant_id: str) -> asyncio.Lock:
        return self._locks.setdefault(tenant_id, asyncio.Lock())


def _same(token: SecretStr, other: SecretStr | None) -> bool:
    return other is not None and token.get_secret_value() == other.get_secret_value()
