"""An HTTPS stand-in for Microsoft Entra (the v2.0 token endpoint) and the Graph Secure Score API.

Entra: `GET /{tenant}/v2.0/.well-known/openid-configuration` and `POST /{tenant}/oauth2/v2.0/token`
(client credentials), which is all `msal.ConfidentialClientApplication` asks for once instance
discovery is off. Graph: `GET /v1.0/security/secureScoreControlProfiles[/{id}]` with `$top`/`$skip`
and `@odata.nextLink` paging, answering only to bearer tokens this stand-in issued and has not
expired, with Graph's error envelope. The sample improvement actions are `improvement_actions.json`.

Tests drive it through `/__entra/` (expire tokens, inject faults, request counts, reset).
"""

from __future__ import annotations

import json
import re
import secrets as random_tokens
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from localdev.tls import DEFAULT_TLS_DIR, LocalTls, RunningSite, ensure_local_tls, serve_https

DEFAULT_CLIENTS = {"dev-graph-client": "dev-graph-secret"}
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
TOKEN_LIFETIME = 3599
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 200
DATA_FILE = Path(__file__).with_name("improvement_actions.json")
_TENANT = re.compile(r"^[0-9a-zA-Z.-]{1,100}$")


@dataclass
class IssuedToken:
    tenant_id: str
    client_id: str
    expires_at: float


@dataclass
class GraphFault:
    status: int
    retry_after: float | None


@dataclass
class EntraState:
    """Registered clients, issued tokens, sample data, faults and counts."""

    clients: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CLIENTS))
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=lambda: load_actions())
    faults: deque[GraphFault] = field(default_factory=deque)
    counts: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.tokens.clear()
        self.faults.clear()
        self.counts.clear()
        self.actions = load_actions()

    def expire_tokens(self, tenant_id: str | None = None) -> int:
        expired = 0
        for token in self.tokens.values():
            if tenant_id in (None, token.tenant_id):
                token.expires_at = 0
                expired += 1
        return expired


def load_actions() -> list[dict[str, Any]]:
    data: dict[str, list[dict[str, Any]]] = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    return data["value"]


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


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
        if not _TENANT.match(tenant):
            return _entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant[:100]}' not found.")
        base = f"{_base_url(request)}/{tenant}"
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
                "userinfo_endpoint": f"{_base_url(request)}/oidc/userinfo",
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


# --- Graph --------------------------------------------------------------------------------------


def _graph_error(
    request: web.Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    inner = {
        "date": _now_iso(),
        "request-id": str(uuid.uuid4()),
        "client-request-id": request.headers.get("client-request-id", str(uuid.uuid4())),
    }
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    return web.json_response(body, status=status, headers=headers)


class GraphApi:
    def __init__(self, state: EntraState) -> None:
        self.state = state

    def _authenticate(self, request: web.Request) -> IssuedToken | web.Response:
        header = request.headers.get("Authorization", "")
        token_value = header[7:].strip() if header.startswith("Bearer ") else ""
        if not token_value:
            return _graph_error(request, 401, "InvalidAuthenticationToken", "Access token is empty.")
        token = self.state.tokens.get(token_value)
        if token is None:
            return _graph_error(
                request,
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.).",
            )
        if token.expires_at <= time.time():
            self.state.counts["graph_expired_token"] += 1
            return _graph_error(
                request,
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
        return token

    def _fault(self, request: web.Request) -> web.Response | None:
        if not self.state.faults:
            return None
        fault = self.state.faults.popleft()
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
        if fault.status == 429:
            message = "Too many requests. Please try again later."
            return _graph_error(request, 429, "TooManyRequests", message, headers)
        return _graph_error(request, fault.status, "ServiceNotAvailable", "Service unavailable.", headers)

    def _shape(self, action: dict[str, Any], tenant_id: str) -> dict[str, Any]:
        return {**action, "azureTenantId": tenant_id}

    async def list_profiles(self, request: web.Request) -> web.Response:
        self.state.counts["graph_list"] += 1
        token = self._authenticate(request)
        if isinstance(token, web.Response):
            return token
        if (fault := self._fault(request)) is not None:
            return fault
        try:
            top = int(request.query.get("$top", DEFAULT_PAGE_SIZE))
            skip = int(request.query.get("$skip", 0))
        except ValueError:
            return _graph_error(request, 400, "BadRequest", "Invalid $top or $skip value.")
        if not 1 <= top <= MAX_PAGE_SIZE or skip < 0:
            return _graph_error(request, 400, "BadRequest", f"$top must be between 1 and {MAX_PAGE_SIZE}.")
        base = _base_url(request)
        page = self.state.actions[skip : skip + top]
        body: dict[str, Any] = {
            "@odata.context": f"{base}/v1.0/$metadata#security/secureScoreControlProfiles",
            "value": [self._shape(a, token.tenant_id) for a in page],
        }
        if skip + top < len(self.state.actions):
            body["@odata.nextLink"] = (
                f"{base}/v1.0/security/secureScoreControlProfiles?$top={top}&$skip={skip + top}"
            )
        return web.json_response(body)

    async def get_profile(self, request: web.Request) -> web.Response:
        self.state.counts["graph_get"] += 1
        token = self._authenticate(request)
        if isinstance(token, web.Response):
            return token
        if (fault := self._fault(request)) is not None:
            return fault
        profile_id = request.match_info["id"]
        action = next((a for a in self.state.actions if a["id"] == profile_id), None)
        if action is None:
            return _graph_error(request, 404, "ResourceNotFound", f"Resource not found: {profile_id[:200]}")
        base = _base_url(request)
        return web.json_response(
            {
                "@odata.context": f"{base}/v1.0/$metadata#security/secureScoreControlProfiles/$entity",
                **self._shape(action, token.tenant_id),
            }
        )


# --- control API --------------------------------------------------------------------------------


class ControlApi:
    def __init__(self, state: EntraState) -> None:
        self.state = state

    async def requests(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"counts": dict(self.state.counts), "total": sum(self.state.counts.values())}
        )

    async def expire_tokens(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        return web.json_response({"expired": self.state.expire_tokens(body.get("tenantId"))})

    async def faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        retry_after = body.get("retryAfter")
        for _ in range(int(body.get("count", 1))):
            fault = GraphFault(
                int(body.get("status", 503)), float(retry_after) if retry_after is not None else None
            )
            self.state.faults.append(fault)
        return web.json_response({"pending": len(self.state.faults)})

    async def clients(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.state.clients[str(body["clientId"])] = str(body["clientSecret"])
        return web.Response(status=204)

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.Response(status=204)


def build_app(state: EntraState | None = None) -> web.Application:
    state = state or EntraState()
    entra, graph, control = EntraApi(state), GraphApi(state), ControlApi(state)
    app = web.Application()
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", entra.openid_configuration)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", entra.token)
    app.router.add_get("/v1.0/security/secureScoreControlProfiles", graph.list_profiles)
    app.router.add_get("/v1.0/security/secureScoreControlProfiles/{id}", graph.get_profile)
    app.router.add_get("/__entra/requests", control.requests)
    app.router.add_post("/__entra/expire-tokens", control.expire_tokens)
    app.router.add_post("/__entra/faults", control.faults)
    app.router.add_post("/__entra/clients", control.clients)
    app.router.add_post("/__entra/reset", control.reset)
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
) -> EntraHandle:
    """Start the stand-in in this event loop; `clients` (id -> secret) replaces the default client."""
    tls = tls or ensure_local_tls(DEFAULT_TLS_DIR)
    state = state or EntraState()
    if clients is not None:
        state.clients = dict(clients)
    site = await serve_https(build_app(state), tls=tls, host=host, port=port)
    return EntraHandle(site.url, state, tls, site)
