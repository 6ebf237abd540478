"""The Graph half of the stand-in: Secure Score control profiles (read and PATCH) and scores (see
`server.py`)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from localdev.entra.profile_updates import (
    device_control_refusal,
    graph_timestamp,
    next_update,
    prefers_representation,
    refusal,
)
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

    def _fault(self, request: web.Request, kind: str, tenant_id: str) -> web.Response | None:
        fault = self.state.take_fault(kind, tenant_id)
        if fault is None:
            return None
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
        if fault.status == 429:
            message = "Too many requests. Please try again later."
            return _graph_error(request, 429, "TooManyRequests", message, headers)
        return _graph_error(request, fault.status, "ServiceNotAvailable", "Service unavailable.", headers)

    def route(self, kind: str, handler: GraphHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A Graph handler behind the token check, the injected faults and the concurrency limit."""

        async def serve(request: web.Request) -> web.Response:
            self.state.counts[kind] += 1
            token = self._authenticate(request)
            if isinstance(token, web.Response):
                return token
            tenant = token.tenant_id
            self.state.tenant_counts[(tenant, kind)] += 1
            if (fault := self._fault(request, kind, tenant)) is not None:
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
            "value": [self.state.profile(token.tenant_id, a) for a in page],
        }
        if skip + top < len(self.state.actions):
            body["@odata.nextLink"] = (
                f"{base}/v1.0/security/secureScoreControlProfiles?$top={top}&$skip={skip + top}"
            )
        return web.json_response(body)

    async def get_profile(self, request: web.Request, token: IssuedToken) -> web.Response:
        profile_id = request.match_info["id"]
        action = self.state.action(profile_id)
        if action is None:
            return _graph_error(request, 404, "ResourceNotFound", f"Resource not found: {profile_id[:200]}")
        return web.json_response(self._entity(request, self.state.profile(token.tenant_id, action)))

    def _entity(self, request: web.Request, profile: dict[str, Any]) -> dict[str, Any]:
        context = f"{base_url(request)}/v1.0/$metadata#security/secureScoreControlProfiles/$entity"
        return {"@odata.context": context, **profile}

    async def update_profile(self, request: web.Request, token: IssuedToken) -> web.Response:
        """PATCH: validated as Graph does (`profile_updates.py`); each accepted one appends a
        `controlStateUpdates` entry to the tenant's copy, by the calling app."""
        profile_id, tenant = request.match_info["id"], token.tenant_id
        raw = await request.text()
        try:
            body: object = json.loads(raw)
        except ValueError:
            body = None
        answer = self._patch_answer(request, profile_id, tenant, body, token.client_id)
        self.state.patches.append(
            {
                "tenantId": tenant,
                "controlId": profile_id,
                "body": body,
                "status": answer.status,
                "receivedAt": graph_timestamp(datetime.now(UTC)),
            }
        )
        return answer

    def _patch_answer(
        self, request: web.Request, profile_id: str, tenant: str, body: object, client_id: str
    ) -> web.Response:
        reason = refusal(body) or device_control_refusal(profile_id)
        if reason is not None:
            return _graph_error(request, 400, "BadRequest", reason)
        action = self.state.action(profile_id)
        if action is None:
            return _graph_error(request, 404, "ResourceNotFound", f"Resource not found: {profile_id[:200]}")
        assert isinstance(body, dict)  # refusal() let only an object through
        latest = self.state.latest_update(tenant, action)
        update = next_update(latest, body, client_id, datetime.now(UTC))
        self.state.append_update(tenant, profile_id, update)
        if not prefers_representation(request.headers.get("Prefer", "")):
            return web.Response(status=204)
        return web.json_response(
            self._entity(request, self.state.profile(tenant, action)),
            headers={"Preference-Applied": "return=representation"},
        )

    async def list_scores(self, request: web.Request, token: IssuedToken) -> web.Response:
        try:
            top = int(request.query.get("$top", HISTORY_DAYS))
        except ValueError:
            return _graph_error(request, 400, "BadRequest", "Invalid $top value.")
        if not 1 <= top <= MAX_PAGE_SIZE:
            return _graph_error(request, 400, "BadRequest", f"$top must be between 1 and {MAX_PAGE_SIZE}.")
        tenant = token.tenant_id
        scores = secure_scores(tenant, self.state.profiles(tenant), self.state.points_of(tenant))
        return web.json_response(
            {
                "@odata.context": f"{base_url(request)}/v1.0/$metadata#security/secureScores",
                "value": scores[:top],
            }
        )


GraphHandler = Callable[[web.Request, IssuedToken], Awaitable[web.Response]]
