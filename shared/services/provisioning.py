"""Connecting a tenant's ServiceNow: configure, authorize (OAuth code + PKCE), status, state names,
the Secure Score write-back switch, remove.

The OAuth `state` is random (256 bits), single use, valid for 10 minutes, and bound to the tenant
and the admin who asked. Its PKCE verifier is never stored: it is derived from the state id with an
app key kept in Key Vault, so a leaked table row cannot complete an authorization. Two callbacks
racing with one state are settled by an ETag-conditional write: exactly one proceeds. Only the
latest state issued for a tenant can complete (the connection row names it): asking for a fresh
authorize URL, or configuring again, voids the ones handed out before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from secrets import token_urlsafe
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import (
    AppError,
    AuthorizationNotCompleted,
    BadRequest,
    ConnectionNotReady,
    PreconditionFailed,
    UpstreamError,
)
from shared.identity import Caller
from shared.instance_names import resolve_instance
from shared.models import (
    AuthorizeResult,
    CallbackParams,
    ConfigureConnection,
    ConfigureResult,
    ConnectionStatus,
    ConnectionView,
    StateNames,
    StateNamesUpdate,
)
from shared.ports import ConnectionStore, OAuthStateStore, SecretStore, ServiceNowOAuth
from shared.records import REFRESH_TOKEN_WARNING, Connection, OAuthState
from shared.remediation_models import SecureScoreUpdate, SecureScoreView
from shared.services.push_setup import PushSetupService
from shared.ticket_states import effective_state_names, known_state_codes

logger = logging.getLogger(__name__)

STATE_LIFETIME = timedelta(minutes=10)
STATE_KEY_NAME = "oauth-state"
_STATE_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class ProvisioningConfig:
    redirect_uri: str
    portal_url: str
    url_template: str
    local_dev: bool


class ProvisioningService:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        states: OAuthStateStore,
        secrets: SecretStore,
        oauth: ServiceNowOAuth,
        config: ProvisioningConfig,
        clock: Clock = SYSTEM_CLOCK,
        push: Callable[[], PushSetupService] | None = None,
    ) -> None:
        self._connections = connections
        self._states = states
        self._secrets = secrets
        self._oauth = oauth
        self._config = config
        self._clock = clock
        self._push = push  # built on first use: most requests here never touch push

    async def configure(self, caller: Caller, request: ConfigureConnection) -> ConfigureResult:
        """Store the instance and client credentials and start an authorization."""
        instance = resolve_instance(
            request.instance, url_template=self._config.url_template, local_dev=self._config.local_dev
        )
        existing = await self._connections.get(caller.tenant_id)
        if request.client_secret is not None:
            await self._secrets.set_client_secret(caller.tenant_id, request.client_secret)
        elif existing is None or await self._secrets.get_client_secret(caller.tenant_id) is None:
            raise BadRequest(
                "clientSecret is required: no client secret is stored for this tenant yet.",
                fields=[{"field": "clientSecret", "message": "required the first time"}],
            )
        state = await self._new_state(caller, instance.url, request.client_id)
        connection = Connection(
            tenant_id=caller.tenant_id,
            instance=instance.name,
            instance_url=instance.url,
            client_id=request.client_id,
            status=ConnectionStatus.PENDING_AUTHORIZATION,
            pending_state_id=state.state_id,
            state_names=existing.state_names if existing else {},
            watermarks=existing.watermarks if existing and existing.instance_url == instance.url else {},
            updated_at=self._clock.now(),
        )
        await self._connections.put(connection)
        await self._states.add(state)
        logger.info("ServiceNow instance %s configured; authorization pending", instance.url)
        url = await self._authorize_url(state)
        return ConfigureResult(status=ConnectionStatus.PENDING_AUTHORIZATION, authorize_url=url)

    async def authorize(self, caller: Caller) -> AuthorizeResult:
        """A fresh authorize URL (new state and PKCE) for the configured instance."""
        connection = await self._connections.get(caller.tenant_id)
        if connection is None:
            raise ConnectionNotReady("Configure the ServiceNow instance first (PUT /api/provisioning).")
        state = await self._new_state(caller, connection.instance_url, connection.client_id)
        await self._states.add(state)
        # From now on only this state may complete: an authorize URL handed out before is void.
        saved = await self._update(caller.tenant_id, lambda _: {"pending_state_id": state.state_id})
        return AuthorizeResult(status=saved.status, authorize_url=await self._authorize_url(state))

    async def status(self, tenant_id: str) -> ConnectionView:
        connection = await self._connections.get(tenant_id)
        if connection is None:
            return ConnectionView(
                status=ConnectionStatus.NOT_CONFIGURED, state_names=effective_state_names({})
            )
        return await self._view(connection)

    async def set_secure_score(self, tenant_id: str, update: SecureScoreUpdate) -> ConnectionView:
        """Turn the write-back of ticket states to Secure Score and/or the work notes on or off
        (a switch left out keeps its setting); the status after."""
        switches = {
            name: value
            for name, value in (
                ("secure_score_write_back", update.write_back),
                ("remediation_work_notes", update.work_notes),
            )
            if value is not None
        }
        saved = await self._connections.update(
            tenant_id, lambda _: {**switches, "updated_at": self._clock.now()}
        )
        if saved is None:
            raise ConnectionNotReady("Configure the ServiceNow instance first (PUT /api/provisioning).")
        for name, value in switches.items():
            logger.info("Secure Score %s turned %s", name.replace("_", " "), "on" if value else "off")
        return await self._view(saved)

    async def _view(self, connection: Connection) -> ConnectionView:
        view = connection_view(connection, self._clock.now())
        if self._push is None:
            return view
        return view.model_copy(update={"push": await self._push().status(connection.tenant_id)})

    async def complete(self, params: CallbackParams) -> str:
        """Finish an authorization from ServiceNow's redirect; the portal URL to send the browser to.

        Every outcome is a redirect to the portal, never an error page and never another host.
        """
        try:
            await self._complete(params)
        except AuthorizationNotCompleted as failure:
            logger.warning("OAuth callback failed: %s", failure.reason)
            return self._portal_url(servicenow="error", reason=failure.reason)
        except AppError as error:
            logger.warning("OAuth callback failed: %s", error.message)
            return self._portal_url(servicenow="error", reason="temporarily_unavailable")
        except Exception:
            # Still a redirect to the portal: the admin's browser must never land on an error page.
            logger.exception("OAuth callback failed unexpectedly")
            return self._portal_url(servicenow="error", reason="temporarily_unavailable")
        return self._portal_url(servicenow="connected")

    async def set_state_names(self, tenant_id: str, update: StateNamesUpdate) -> StateNames:
        connection = await self._connections.get(tenant_id)
        if connection is None:
            raise ConnectionNotReady("Configure the ServiceNow instance first (PUT /api/provisioning).")
        for table, names in (("incident", update.incident), ("change_request", update.change_request)):
            known = known_state_codes(table, connection.instance_state_labels)
            unknown = sorted(code for code in names if code not in known)
            if unknown:
                message = f"{table} has no state code {', '.join(unknown)}"
                raise BadRequest(
                    message, fields=[{"field": f"{table}.{c}", "message": message} for c in unknown]
                )

        def merge(current: Connection) -> dict[str, Any]:
            custom = {table: dict(names) for table, names in current.state_names.items()}
            for table, names in (("incident", update.incident), ("change_request", update.change_request)):
                for code, name in names.items():
                    if name is None:
                        custom.get(table, {}).pop(code, None)
                    else:
                        custom.setdefault(table, {})[code] = name
            return {"state_names": {table: names for table, names in custom.items() if names}}

        saved = await self._update(tenant_id, merge)
        return effective_state_names(saved.state_names, saved.instance_state_labels)

    async def remove(self, tenant_id: str) -> None:
        """Revoke the tokens (best effort), delete the secrets and the connection. Tickets stay."""
        connection = await self._connections.get(tenant_id)
        try:
            tokens = await self._secrets.get_tokens(tenant_id, fresh=True)
        except UpstreamError as error:  # unreadable tokens must not make the connection unremovable
            logger.warning("Not revoking at ServiceNow: %s", error.message)
            tokens = None
        if connection is not None and tokens is not None:
            await self._oauth.revoke(connection.instance_url, tokens.refresh_token)
            await self._oauth.revoke(connection.instance_url, tokens.access_token)
        await self._secrets.delete_tenant(tenant_id)
        if self._push is not None:
            await self._push().remove(tenant_id)  # the hook mapping first, then the key
        await self._connections.delete(tenant_id)
        logger.info("ServiceNow connection removed")

    async def _new_state(self, caller: Caller, instance_url: str, client_id: str) -> OAuthState:
        key = await self._secrets.app_key(STATE_KEY_NAME)
        now = self._clock.now()
        return OAuthState(
            key_version=key.version,
            state_id=token_urlsafe(32),
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            user_name=caller.name,
            instance_url=instance_url,
            client_id=client_id,
            created_at=now,
            expires_at=now + STATE_LIFETIME,
        )

    async def _authorize_url(self, state: OAuthState) -> str:
        return self._oauth.authorize_url(
            state.instance_url,
            client_id=state.client_id,
            redirect_uri=self._config.redirect_uri,
            state=state.state_id,
            verifier=await self._verifier(state),
        )

    async def _complete(self, params: CallbackParams) -> None:
        if not params.state or not _STATE_ID.match(params.state):
            raise AuthorizationNotCompleted("unknown_state")
        state = await self._states.get(params.state)
        if state is None:
            raise AuthorizationNotCompleted("unknown_state")
        if state.consumed_at is not None:
            raise AuthorizationNotCompleted("replay")
        now = self._clock.now()
        if now >= state.expires_at:
            raise AuthorizationNotCompleted("expired_state")
        try:
            await self._states.consume(state, now)
        except PreconditionFailed as exc:
            raise AuthorizationNotCompleted("replay") from exc
        connection = await self._connections.get(state.tenant_id)
        if connection is None or (connection.instance_url, connection.client_id) != (
            state.instance_url,
            state.client_id,
        ):
            raise AuthorizationNotCompleted("configuration_changed")
        if connection.pending_state_id != state.state_id:
            raise AuthorizationNotCompleted("superseded")
        if params.error or not params.code:
            reason = (
                "denied" if params.error == "access_denied" or not params.code else "authorization_failed"
            )
            await self._record_error(connection, "The ServiceNow authorization was denied or failed.")
            raise AuthorizationNotCompleted(reason)
        await self._exchange(connection, state, params.code)

    async def _exchange(self, connection: Connection, state: OAuthState, code: str) -> None:
        client_secret = await self._secrets.get_client_secret(connection.tenant_id, fresh=True)
        if client_secret is None:
            raise AuthorizationNotCompleted("exchange_failed")
        try:
            tokens = await self._oauth.exchange_code(
                connection.instance_url,
                client_id=connection.client_id,
                client_secret=client_secret,
                code=code,
                redirect_uri=self._config.redirect_uri,
                verifier=await self._verifier(state),
                state=state.state_id,
            )
            authorized = connection.model_copy(update={"connected_at": self._clock.now()})
            tokens = tokens.for_grant(authorized)
            await self._secrets.set_tokens(connection.tenant_id, tokens)
        except AppError as error:
            await self._record_error(connection, f"Exchanging the authorization code failed: {error.message}")
            raise AuthorizationNotCompleted("exchange_failed") from error
        connected = {
            "status": ConnectionStatus.CONNECTED,
            "connected_by": state.user_id,
            "connected_by_name": state.user_name,
            "connected_at": authorized.connected_at,
            "access_token_expires_at": tokens.access_token_expires_at,
            "refresh_token_expires_at": tokens.refresh_token_expires_at,
            "last_error": None,
        }

        def connect(current: Connection) -> dict[str, Any]:
            # Done with this state; a re-authorize issued meanwhile stays the one that may complete.
            pending = None if current.pending_state_id == state.state_id else current.pending_state_id
            return {**connected, "pending_state_id": pending}

        await self._update(connection.tenant_id, connect)
        logger.info("ServiceNow connected for %s", connection.instance_url)

    async def _record_error(self, connection: Connection, message: str) -> None:
        try:
            await self._update(connection.tenant_id, lambda _: {"last_error": message})
        except AppError:
            logger.warning("Could not record the error on the connection")

    async def _update(self, tenant_id: str, change: Callable[[Connection], dict[str, Any]]) -> Connection:
        """Change the connection row (ETag-safe, re-applied on a lost race) and stamp updated_at."""
        updated = await self._connections.update(
            tenant_id, lambda current: {**change(current), "updated_at": self._clock.now()}
        )
        if updated is None:
            raise ConnectionNotReady("The ServiceNow connection was removed.")
        return updated

    async def _verifier(self, state: OAuthState) -> str:
        # The key version the state was issued with: another instance may have created a newer one.
        key = await self._secrets.app_key(STATE_KEY_NAME, version=state.key_version)
        digest = hmac.new(
            key.value.get_secret_value().encode(), state.state_id.encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _portal_url(self, **params: str) -> str:
        parts = urlsplit(self._config.portal_url)
        query = [*parse_qsl(parts.query), *params.items()]
        return urlunsplit(parts._replace(query=urlencode(query)))


def connection_view(connection: Connection, now: datetime) -> ConnectionView:
    """What `GET /api/provisioning` shows of a stored connection at `now`."""
    return ConnectionView(
        status=connection.status,
        instance=connection.instance,
        instance_url=connection.instance_url,
        client_id=connection.client_id,
        connected_by=connection.connected_by_name,
        connected_at=connection.connected_at,
        access_token_expires_at=connection.access_token_expires_at,
        refresh_token_expires_at=connection.refresh_token_expires_at,
        last_sync_at=connection.last_sync_at,
        last_sync_started_at=connection.last_sync_started_at,
        sync_in_progress=connection.sync_lease_until is not None and connection.sync_lease_until > now,
        last_error=connection.last_error,
        refresh_token_expires_soon=(
            connection.status == ConnectionStatus.CONNECTED
            and connection.refresh_token_expires_at is not None
            and connection.refresh_token_expires_at - now < REFRESH_TOKEN_WARNING
        ),
        state_names=effective_state_names(connection.state_names, connection.instance_state_labels),
        secure_score=SecureScoreView(
            write_back=connection.secure_score_write_back,
            work_notes=connection.remediation_work_notes,
            checked_at=connection.remediation_checked_at,
            # A pause that has run out is no pause: Graph may be called again.
            paused_until=connection.graph_not_before
            if connection.graph_not_before is not None and connection.graph_not_before > now
            else None,
        ),
    )
