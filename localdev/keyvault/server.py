"""An HTTPS stand-in for the Key Vault secrets REST API, enough for the real `azure-keyvault-secrets`.

It speaks the wire protocol the SDK uses: the challenge handshake (a request without a bearer token
is answered 401 with `WWW-Authenticate`), `api-version` on every call, Key Vault's JSON shapes and
error envelope, soft delete with purge, `nextLink` paging. Any non-empty bearer token is accepted:
tokens are the business of the Entra stand-in, and locally the app uses a static credential.

Tests drive it through a control API under `/__kv/` (fault injection, request counts, reset).
"""

from __future__ import annotations

import base64
import re
import secrets as random_tokens
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from localdev.tls import DEFAULT_TLS_DIR, LocalTls, RunningSite, ensure_local_tls, serve_https

NAME_PATTERN = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
DEFAULT_PAGE_SIZE = 25
CHALLENGE_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CHALLENGE = (
    f'Bearer authorization="https://login.microsoftonline.com/{CHALLENGE_TENANT}", '
    'resource="https://vault.azure.net"'
)
RETENTION_DAYS = 90

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class SecretVersion:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool
    created: int
    updated: int


@dataclass
class DeletedSecret:
    versions: list[SecretVersion]
    deleted_date: int


@dataclass
class Fault:
    status: int
    retry_after: float | None
    operation: str | None


@dataclass
class KeyVaultState:
    """Everything the stand-in holds; tests may read it directly when running in-process."""

    secrets: dict[str, list[SecretVersion]] = field(default_factory=dict)
    deleted: dict[str, DeletedSecret] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    faults: deque[Fault] = field(default_factory=deque)
    purge_protection: bool = False

    def reset(self) -> None:
        self.secrets.clear()
        self.deleted.clear()
        self.counts.clear()
        self.faults.clear()
        self.purge_protection = False

    def next_fault(self, operation: str) -> Fault | None:
        for fault in list(self.faults):
            if fault.operation in (None, operation):
                self.faults.remove(fault)
                return fault
        return None


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


class KeyVaultApi:
    """The request handlers; one instance per running stand-in."""

    def __init__(self, state: KeyVaultState) -> None:
        self.state = state

    # --- shapes -------------------------------------------------------------------------------

    def _attributes(self, version: SecretVersion) -> dict[str, Any]:
        level = "Recoverable" if self.state.purge_protection else "Recoverable+Purgeable"
        return {
            "enabled": version.enabled,
            "created": version.created,
            "updated": version.updated,
            "recoveryLevel": level,
            "recoverableDays": RETENTION_DAYS,
        }

    def _item(self, base: str, name: str, version: SecretVersion, *, with_version: bool) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": f"{base}/secrets/{name}/{version.version}" if with_version else f"{base}/secrets/{name}",
            "attributes": self._attributes(version),
        }
        if version.content_type is not None:
            item["contentType"] = version.content_type
        if version.tags is not None:
            item["tags"] = version.tags
        return item

    def _bundle(self, base: str, name: str, version: SecretVersion) -> dict[str, Any]:
        return {"value": version.value, **self._item(base, name, version, with_version=True)}

    def _deleted_bundle(self, base: str, name: str, deleted: DeletedSecret) -> dict[str, Any]:
        latest = deleted.versions[-1]
        return {
            **self._item(base, name, latest, with_version=True),
            "recoveryId": f"{base}/deletedsecrets/{name}",
            "deletedDate": deleted.deleted_date,
            "scheduledPurgeDate": deleted.deleted_date + RETENTION_DAYS * 86400,
        }

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        size = int(request.query.get("maxresults", DEFAULT_PAGE_SIZE))
        token = request.query.get("$skiptoken")
        start = int(base64.urlsafe_b64decode(token).decode()) if token else 0
        page = items[start : start + size]
        next_link = None
        if start + size < len(items):
            skip = base64.urlsafe_b64encode(str(start + size).encode()).decode()
            api_version = request.query.get("api-version", "")
            next_link = (
                f"{_base_url(request)}{request.path}?api-version={api_version}"
                f"&$skiptoken={skip}&maxresults={size}"
            )
        return web.json_response({"value": page, "nextLink": next_link})

    # --- secrets ------------------------------------------------------------------------------

    async def set_secret(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in self.state.deleted:
            return _error(
                409,
                "Conflict",
                f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be "
                "reused; in this state, the secret can only be recovered or purged.",
            )
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            return _error(400, "BadParameter", "The request body must contain a string 'value'.")
        now = int(time.time())
        attributes = body.get("attributes") or {}
        version = SecretVersion(
            version=random_tokens.token_hex(16),
            value=body["value"],
            content_type=body.get("contentType"),
            tags=body.get("tags"),
            enabled=bool(attributes.get("enabled", True)),
            created=now,
            updated=now,
        )
        self.state.secrets.setdefault(name, []).append(version)
        return web.json_response(self._bundle(_base_url(request), name, version))

    def _find(self, name: str, version: str) -> SecretVersion | None:
        versions = self.state.secrets.get(name) or []
        if not version:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version), None)

    async def get_secret(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = self._find(name, request.match_info.get("version", ""))
        if found is None:
            return _error(
                404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
            )
        if not found.enabled:
            return _error(403, "Forbidden", "Operation get is not allowed on a disabled secret.")
        return web.json_response(self._bundle(_base_url(request), name, found))

    async def list_secrets(self, request: web.Request) -> web.Response:
        base = _base_url(request)
        items = [
            self._item(base, n, v[-1], with_version=False) for n, v in sorted(self.state.secrets.items())
        ]
        return self._page(request, items)

    async def list_versions(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        base = _base_url(request)
        versions = self.state.secrets.get(name) or []
        return self._page(request, [self._item(base, name, v, with_version=True) for v in versions])

    async def delete_secret(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        versions = self.state.secrets.pop(name, None)
        if not versions:
            return _error(
                404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
            )
        deleted = DeletedSecret(versions, int(time.time()))
        self.state.deleted[name] = deleted
        return web.json_response(self._deleted_bundle(_base_url(request), name, deleted))

    # --- deleted secrets ----------------------------------------------------------------------

    def _deleted_not_found(self, name: str) -> web.Response:
        return _error(404, "SecretNotFound", f"Deleted Secret not found: {name}")

    async def get_deleted(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        deleted = self.state.deleted.get(name)
        if deleted is None:
            return self._deleted_not_found(name)
        return web.json_response(self._deleted_bundle(_base_url(request), name, deleted))

    async def list_deleted(self, request: web.Request) -> web.Response:
        base = _base_url(request)
        items = [self._deleted_bundle(base, n, d) for n, d in sorted(self.state.deleted.items())]
        return self._page(request, items)

    async def purge(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.state.deleted:
            return self._deleted_not_found(name)
        if self.state.purge_protection:
            return _error(
                403,
                "Forbidden",
                'Operation "purge" is not allowed because purge protection is enabled for this vault. '
                "Key Vault service will automatically purge it after the retention period has passed.",
            )
        del self.state.deleted[name]
        return web.Response(status=204)

    async def recover(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        deleted = self.state.deleted.pop(name, None)
        if deleted is None:
            return self._deleted_not_found(name)
        self.state.secrets[name] = deleted.versions
        item = self._item(_base_url(request), name, deleted.versions[-1], with_version=True)
        return web.json_response(item)

    # --- control API --------------------------------------------------------------------------

    async def control_requests(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"counts": dict(self.state.counts), "total": sum(self.state.counts.values())}
        )

    async def control_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        status = int(body.get("status", 503))
        retry_after = body.get("retryAfter")
        for _ in range(int(body.get("count", 1))):
            fault = Fault(
                status, float(retry_after) if retry_after is not None else None, body.get("operation")
            )
            self.state.faults.append(fault)
        return web.json_response({"pending": len(self.state.faults)})

    async def control_reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.Response(status=204)

    async def control_purge_protection(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.state.purge_protection = bool(body.get("enabled", True))
        return web.json_response({"enabled": self.state.purge_protection})

    async def control_state(self, request: web.Request) -> web.Response:
        # Names only: even a test tool should not hand out secret values in bulk.
        return web.json_response(
            {"secrets": sorted(self.state.secrets), "deleted": sorted(self.state.deleted)}
        )


def _guard(state: KeyVaultState, operation: str, handler: Handler) -> Handler:
    """Wrap a vault operation with the checks every real request goes through, in Key Vault's order."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            state.counts["unauthenticated"] += 1
            return _error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                headers={"WWW-Authenticate": CHALLENGE},
            )
        state.counts[operation] += 1
        if "api-version" not in request.query:
            return _error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        name = request.match_info.get("name")
        if name is not None and not NAME_PATTERN.match(name):
            return _error(400, "BadParameter", "The request URI contains an invalid name: " + name[:127])
        fault = state.next_fault(operation)
        if fault is not None:
            return _fault_response(fault)
        return await handler(request)

    return guarded


def _fault_response(fault: Fault) -> web.Response:
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
    if fault.status == 429:
        message = "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"
        return _error(429, "Throttled", message, headers)
    return _error(fault.status, "ServiceUnavailable", "The service is temporarily unavailable.", headers)


def build_app(state: KeyVaultState | None = None) -> web.Application:
    state = state or KeyVaultState()
    api = KeyVaultApi(state)
    app = web.Application()
    vault_routes: list[tuple[str, str, str, Handler]] = [
        ("GET", "/secrets", "list_secrets", api.list_secrets),
        ("PUT", "/secrets/{name}", "set_secret", api.set_secret),
        ("DELETE", "/secrets/{name}", "delete_secret", api.delete_secret),
        ("GET", "/secrets/{name}/versions", "list_versions", api.list_versions),
        ("GET", "/secrets/{name}/", "get_secret", api.get_secret),
        ("GET", "/secrets/{name}/{version}", "get_secret", api.get_secret),
        ("GET", "/deletedsecrets", "list_deleted", api.list_deleted),
        ("GET", "/deletedsecrets/{name}", "get_deleted", api.get_deleted),
        ("DELETE", "/deletedsecrets/{name}", "purge", api.purge),
        ("POST", "/deletedsecrets/{name}/recover", "recover", api.recover),
    ]
    for method, path, operation, handler in vault_routes:
        app.router.add_route(method, path, _guard(state, operation, handler))
    app.router.add_get("/__kv/requests", api.control_requests)
    app.router.add_get("/__kv/state", api.control_state)
    app.router.add_post("/__kv/faults", api.control_faults)
    app.router.add_post("/__kv/reset", api.control_reset)
    app.router.add_put("/__kv/purge-protection", api.control_purge_protection)
    return app


@dataclass
class KeyVaultHandle:
    """A running stand-in: `url` is the vault URL (KEY_VAULT_URL), `tls.ca_path` the CA to trust."""

    url: str
    state: KeyVaultState
    tls: LocalTls
    site: RunningSite

    async def aclose(self) -> None:
        await self.site.aclose()


async def start_keyvault(
    *, port: int = 0, host: str = "127.0.0.1", tls: LocalTls | None = None, state: KeyVaultState | None = None
) -> KeyVaultHandle:
    """Start the stand-in in this event loop (tests, the local runner)."""
    tls = tls or ensure_local_tls(DEFAULT_TLS_DIR)
    state = state or KeyVaultState()
    site = await serve_https(build_app(state), tls=tls, host=host, port=port)
    return KeyVaultHandle(site.url, state, tls, site)
