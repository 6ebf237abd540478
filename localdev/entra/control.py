"""The stand-in's control API under `/__entra/`: what tests use to drive it (see `server.py`).

- `GET /__entra/requests[?tenantId=]`: requests served by kind (`graph_list`, `graph_get`,
  `graph_patch`, `graph_scores`, `token`, ...).
- `GET /__entra/patches[?tenantId=&controlId=]`: every PATCH of a control profile that got past the
  token check and the faults, oldest first: `{tenantId, controlId, body, status, receivedAt}`
  (`body` is null when it was not JSON).
- `POST /__entra/faults` `{"status": 429, "count": 1, "retryAfter": s, "kind": "graph_patch",
  "tenantId": t}`: the next `count` Graph requests answer `status`; `kind` and `tenantId` (both
  optional) narrow which requests take them.
- `PUT /__entra/secure-scores/{tenant}/controls/{control}` `{"score": n}`: today's points.
- `PUT /__entra/control-states/{tenant}/{control}` `{"state": "ThirdParty"[, "comment": "...",
  "assignedTo": "...", "updatedBy": "..."]}`: a state change made in the portal, not through
  PATCH: appended to the profile's `controlStateUpdates` but not recorded as a PATCH.
- `PUT /__entra/deprecations/{tenant}/{control}` `{"deprecated": true}`: the tenant's profile is
  (or no longer is) deprecated, and so has no score.
- `POST /__entra/page-size`, `/latency`, `/expire-tokens`, `/clients`, `/reset`: see each handler.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from localdev.entra.profile_updates import STATES, next_update
from localdev.entra.state import MAX_PAGE_SIZE, EntraState, GraphFault

PORTAL_ADMIN = "admin@contoso.onmicrosoft.com"


class ControlApi:
    def __init__(self, state: EntraState) -> None:
        self.state = state

    async def requests(self, request: web.Request) -> web.Response:
        """Requests served by kind; `?tenantId=` counts one tenant's Graph requests only, and adds the
        most that were in flight at once."""
        tenant = request.query.get("tenantId")
        if tenant is None:
            counts = dict(self.state.counts)
            return web.json_response({"counts": counts, "total": sum(counts.values())})
        counts = {kind: n for (t, kind), n in self.state.tenant_counts.items() if t == tenant}
        return web.json_response(
            {"counts": counts, "total": sum(counts.values()), "maxInFlight": self.state.max_in_flight[tenant]}
        )

    async def set_score(self, request: web.Request) -> web.Response:
        """`PUT /__entra/secure-scores/{tenant}/controls/{control}` `{"score": n}`: today's points."""
        tenant, control = request.match_info["tenant"], request.match_info["control"]
        body = await request.json()
        score = body.get("score") if isinstance(body, dict) else None
        if not isinstance(score, int | float) or isinstance(score, bool) or score < 0:
            return web.json_response({"error": "score must be a number >= 0"}, status=400)
        self.state.points_of(tenant)[control] = float(score)
        return web.json_response({"tenantId": tenant, "controlName": control, "score": float(score)})

    async def set_control_state(self, request: web.Request) -> web.Response:
        """`PUT /__entra/control-states/{tenant}/{control}`: as if an admin changed it in the portal."""
        tenant, control = request.match_info["tenant"], request.match_info["control"]
        action = self.state.action(control)
        if action is None:
            return web.json_response({"error": f"no control profile {control}"}, status=404)
        body = await request.json()
        if not isinstance(body, dict) or body.get("state") not in STATES:
            return web.json_response({"error": f"state must be one of {', '.join(STATES)}"}, status=400)
        changes = {k: str(body[k]) for k in ("state", "comment", "assignedTo") if body.get(k) is not None}
        latest = self.state.latest_update(tenant, action)
        update = next_update(latest, changes, str(body.get("updatedBy") or PORTAL_ADMIN), datetime.now(UTC))
        self.state.append_update(tenant, control, update)
        return web.json_response(update)

    async def set_deprecated(self, request: web.Request) -> web.Response:
        """`PUT /__entra/deprecations/{tenant}/{control}` `{"deprecated": bool}`."""
        tenant, control = request.match_info["tenant"], request.match_info["control"]
        if self.state.action(control) is None:
            return web.json_response({"error": f"no control profile {control}"}, status=404)
        body = await request.json()
        deprecated = body.get("deprecated") if isinstance(body, dict) else None
        if not isinstance(deprecated, bool):
            return web.json_response({"error": "deprecated must be true or false"}, status=400)
        self.state.deprecations[(tenant, control)] = deprecated
        return web.json_response({"tenantId": tenant, "controlName": control, "deprecated": deprecated})

    async def patches(self, request: web.Request) -> web.Response:
        """The PATCH requests received, oldest first, of one tenant and/or control when asked."""
        tenant, control = request.query.get("tenantId"), request.query.get("controlId")
        found: list[dict[str, Any]] = [
            p
            for p in self.state.patches
            if tenant in (None, p["tenantId"]) and control in (None, p["controlId"])
        ]
        return web.json_response({"patches": found})

    async def page_size(self, request: web.Request) -> web.Response:
        """`{"pageSize": n[, "tenantId": t]}`: the largest page of control profiles (one tenant's, or
        every tenant's without one of its own)."""
        body = await request.json()
        size = int(body["pageSize"])
        if not 1 <= size <= MAX_PAGE_SIZE:
            return web.json_response({"error": f"pageSize must be 1 to {MAX_PAGE_SIZE}"}, status=400)
        if body.get("tenantId"):
            self.state.page_sizes[str(body["tenantId"])] = size
        else:
            self.state.page_size = size
        return web.Response(status=204)

    async def latency(self, request: web.Request) -> web.Response:
        """`{"seconds": s}`: every Graph answer waits this long (requests then overlap)."""
        self.state.latency_s = max(0.0, float((await request.json())["seconds"]))
        return web.Response(status=204)

    async def expire_tokens(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        return web.json_response({"expired": self.state.expire_tokens(body.get("tenantId"))})

    async def faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        retry_after = body.get("retryAfter")
        kind, tenant = body.get("kind"), body.get("tenantId")
        for _ in range(int(body.get("count", 1))):
            fault = GraphFault(
                int(body.get("status", 503)),
                float(retry_after) if retry_after is not None else None,
                str(kind) if kind else None,
                str(tenant) if tenant else None,
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
