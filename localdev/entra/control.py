"""The stand-in's control API under `/__entra/`: what tests use to drive it (see `server.py`)."""

from __future__ import annotations

from aiohttp import web

from localdev.entra.state import MAX_PAGE_SIZE, EntraState, GraphFault


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
