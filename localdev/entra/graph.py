"""The Graph half of the stand-in: Secure Score control profiles and scores (see `server.py`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from localdev.entra.secure_score import HISTORY_DAYS, secure_scores
from localdev.entra.state import (
    CONCURRENCY_LIMIT,
    MAX_PAGE_SIZE,
    EntraState,
    IssuedToken,
    base_url,
)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


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

    def route(self, kind: str, handler: GraphHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A Graph handler behind the token check, the injected faults and the concurrency limit."""

        async def serve(request: web.Request) -> web.Response:
            self.state.counts[kind] += 1
            token = self._authenticate(request)
            if isinstance(token, web.Response):
                return token
            tenant = token.tenant_id
            self.state.tenant_counts[(tenant, kind)] += 1
            if (fault := self._fault(request)) is not None:
                return fault
            if self.state.in_flight[tenant] >= CONCURRENCY_LIMIT:
                self.state.counts["graph_concurrency_throttled"] += 1
                message = "Too many concurrent requests. Please try again later."
                return _graph_error(request, 429, "TooManyRequests", message, {"Retry-After": "1"})
            self.state.in_flight[tenant] += 1
            self.state.max_in_flight[tenant] = max(
                self.state.max_in_flight[tenant], self.state.in_flight[tenant]
            )
            try:
                if self.state.latency_s > 0:
                    await asyncio.sleep(self.state.latency_s)
                return await handler(request, token)
            finally:
                self.state.in_flight[tenant] -= 1

        return serve

    async def list_profiles(self, request: web.Request, token: IssuedToken) -> web.Response:
        # The configured page size is both the default and the largest page, as Graph's own paging.
        page_size = self.state.page_sizes.get(token.tenant_id, self.state.page_size)
        try:
            top = int(request.query.get("$top", page_size))
            skip = int(request.query.get("$skip", 0))
        except ValueError:
            return _graph_error(request, 400, "BadRequest", "Invalid $top or $skip value.")
        if not 1 <= top <= MAX_PAGE_SIZE or skip < 0:
            return _graph_error(request, 400, "BadRequest", f"$top must be between 1 and {MAX_PAGE_SIZE}.")
        top = min(top, page_size)
        base = base_url(request)
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

    async def get_profile(self, request: web.Request, token: IssuedToken) -> web.Response:
        profile_id = request.match_info["id"]
        action = next((a for a in self.state.actions if a["id"] == profile_id), None)
        if action is None:
            return _graph_error(request, 404, "ResourceNotFound", f"Resource not found: {profile_id[:200]}")
        base = base_url(request)
        return web.json_response(
            {
                "@odata.context": f"{base}/v1.0/$metadata#security/secureScoreControlProfiles/$entity",
                **self._shape(action, token.tenant_id),
            }
        )

    async def list_scores(self, request: web.Request, token: IssuedToken) -> web.Response:
        try:
            top = int(request.query.get("$top", HISTORY_DAYS))
        except ValueError:
            return _graph_error(request, 400, "BadRequest", "Invalid $top value.")
        if not 1 <= top <= MAX_PAGE_SIZE:
            return _graph_error(request, 400, "BadRequest", f"$top must be between 1 and {MAX_PAGE_SIZE}.")
        tenant = token.tenant_id
        scores = secure_scores(tenant, self.state.actions, self.state.points_of(tenant))
        return web.json_response(
            {
                "@odata.context": f"{base_url(request)}/v1.0/$metadata#security/secureScores",
                "value": scores[:top],
            }
        )


GraphHandler = Callable[[web.Request, IssuedToken], Awaitable[web.Response]]
