"""An HTTPS stand-in for Microsoft Entra (the v2.0 token endpoint) and the Graph Secure Score API.

Entra: `GET /{tenant}/v2.0/.well-known/openid-configuration` and `POST /{tenant}/oauth2/v2.0/token`
(client credentials), which is all `msal.ConfidentialClientApplication` asks for once instance
discovery is off. Graph: `GET /v1.0/security/secureScoreControlProfiles[/{id}]` with `$top`/`$skip`
and `@odata.nextLink` paging (pages of at most `page_size`, 10 unless set, per tenant or for all),
`PATCH /v1.0/security/secureScoreControlProfiles/{id}` (a control's state, validated as Graph does
and appended to the tenant's `controlStateUpdates`: `profile_updates.py`), and
`GET /v1.0/security/secureScores` (`secure_score.py`), answering only to bearer tokens this
stand-in issued and has not expired, with Graph's error envelope. Like Graph, it allows 4 requests
in flight per tenant and answers a fifth 429 (`Retry-After: 1`). The sample improvement actions
are `improvement_actions.json`; each tenant's state updates and deprecations are its own.

Tests drive it through `/__entra/` (`control.py` lists each): expire tokens, inject faults (by
route kind and tenant if wanted), request counts, the PATCH requests received, set a control's
score, set a control's state as an admin would in the portal, deprecate a control, page size,
latency, reset. The Graph half is `graph.py`, the control API `control.py`, what both change
`state.py`.
"""

from __future__ import annotations

import secrets as random_tokens
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from localdev.entra.control import ControlApi
from localdev.entra.graph import GraphApi
from localdev.entra.state import (
    DEFAULT_CLIENTS,
    GRAPH_SCOPE,
    TENANT,
    TOKEN_LIFETIME,
    EntraState,
    IssuedToken,
    base_url,
    load_actions,
)
from localdev.tls import DEFAULT_TLS_DIR, LocalTls, RunningSite, ensure_local_tls, serve_https

__all__ = ["DEFAULT_CLIENTS", "EntraHandle", "EntraState", "build_app", "load_actions", "start_entra"]


# --- Entra --------------------------------------------------------------------------------------


def _entra_error(status: int, error: str, code: int, description: str) -> web.Response:
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {description} Trace ID: {trace_id} Correlation ID: {correlation_id} "
            f"Timestamp: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%SZ')}"
        ),
        "error_codes": [code],
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return web.json_response(body, status=status)


class EntraApi:
    def __init__(self, state: EntraState) -> None:
        self.state = state

    async def openid_configuration(self, request: web.Request) -> web.Response:
        self.state.counts["discovery"] += 1
        tenant = request.match_info["tenant"]
        if not TENANT.match(tenant):
            return _entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant[:100]}' not found.")
        base = f"{base_url(request)}/{tenant}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{base_url(request)}/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "tid"],
                "kerberos_endpoint": f"{base}/kerberos",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            }
        )

    async def token(self, request: web.Request) -> web.Response:
        self.state.counts["token"] += 1
        tenant = request.match_info["tenant"]
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return _entra_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = str(form.get("client_id", ""))
        if client_id not in self.state.clients:
            return _entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id[:64]}' was not found in the directory '{tenant}'.",
            )
        if form.get("client_secret") != self.state.clients[client_id]:
            return _entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        scopes = str(form.get("scope", "")).split()
        if GRAPH_SCOPE not in scopes:
            return _entra_error(
                400,
                "invalid_scope",
                1002012,
                "The provided value for scope is not valid for client credentials.",
            )
        access_token = "graph-at." + random_tokens.token_urlsafe(32)
        self.state.tokens[access_token] = IssuedToken(tenant, client_id, time.time() + TOKEN_LIFETIME)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": access_token,
            }
        )


def build_app(state: EntraState | None = None) -> web.Application:
    state = state or EntraState()
    entra, graph, control = EntraApi(state), GraphApi(state), ControlApi(state)
    app = web.Application()
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", entra.openid_configuration)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", entra.token)
    app.router.add_get(
        "/v1.0/security/secureScoreControlProfiles", graph.route("graph_list", graph.list_profiles)
    )
    app.router.add_get(
        "/v1.0/security/secureScoreControlProfiles/{id}", graph.route("graph_get", graph.get_profile)
    )
    app.router.add_patch(
        "/v1.0/security/secureScoreControlProfiles/{id}", graph.route("graph_patch", graph.update_profile)
    )
    app.router.add_get("/v1.0/security/secureScores", graph.route("graph_scores", graph.list_scores))
    app.router.add_get("/__entra/requests", control.requests)
    app.router.add_post("/__entra/expire-tokens", control.expire_tokens)
    app.router.add_post("/__entra/faults", control.faults)
    app.router.add_post("/__entra/clients", control.clients)
    app.router.add_post("/__entra/reset", control.reset)
    app.router.add_put("/__entra/secure-scores/{tenant}/controls/{control}", control.set_score)
    app.router.add_put("/__entra/control-states/{tenant}/{control}", control.set_control_state)
    app.router.add_put("/__entra/deprecations/{tenant}/{control}", control.set_deprecated)
    app.router.add_get("/__entra/patches", control.patches)
    app.router.add_post("/__entra/page-size", control.page_size)
    app.router.add_post("/__entra/latency", control.latency)
    return app


@dataclass
class EntraHandle:
    """A running stand-in: `url` serves as both ENTRA_AUTHORITY_HOST and GRAPH_BASE_URL."""

    url: str
    state: EntraState
    tls: LocalTls
    site: RunningSite

    async def aclose(self) -> None:
        await self.site.aclose()


async def start_entra(
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    tls: LocalTls | None = None,
    clients: dict[str, str] | None = None,
    state: EntraState | None = None,
    page_size: int | None = None,
) -> EntraHandle:
    """Start the stand-in in this event loop; `clients` (id -> secret) replaces the default client,
    `page_size` the default largest page of control profiles."""
    tls = tls or ensure_local_tls(DEFAULT_TLS_DIR)
    state = state or EntraState()
    if clients is not None:
        state.clients = dict(clients)
    if page_size is not None:
        state.page_size = page_size
    site = await serve_https(build_app(state), tls=tls, host=host, port=port)
    return EntraHandle(site.url, state, tls, site)
