"""The test-only control API under ``/__sim/``: a path no real instance has.

JSON in and out, no authentication, never counted in stats and never hit by injected faults or
the rate limit. Every endpoint is listed in README.md.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .clock import format_glide
from .faults import FaultPlanError
from .oauth import Grant
from .push import PushConfig, PushConfigError
from .state import STATE_KEY, SimulatorState

CONTROL_PREFIX = "/__sim"
FULFILLER_USER = "itil"


def _state(request: web.Request) -> SimulatorState:
    return request.app[STATE_KEY]


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body must be JSON"}), content_type="application/json"
        ) from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body must be a JSON object"}), content_type="application/json"
        )
    return body


def _known_table(request: web.Request) -> str:
    table = request.match_info["table"]
    if not _state(request).records.has_table(table):
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"unknown table {table}"}), content_type="application/json"
        )
    return table


async def update_record(request: web.Request) -> web.Response:
    """POST /__sim/records/{table}/{sys_id}: change fields as a fulfiller would in the UI."""
    table = _known_table(request)
    record = _state(request).records.update(
        table, request.match_info["sys_id"], await _body(request), user=FULFILLER_USER
    )
    if record is None:
        return web.json_response({"error": "no such record"}, status=404)
    return web.json_response({"result": record})


async def delete_record(request: web.Request) -> web.Response:
    """DELETE /__sim/records/{table}/{sys_id}: the record is deleted in the instance."""
    table = _known_table(request)
    if not _state(request).records.delete(table, request.match_info["sys_id"]):
        return web.json_response({"error": "no such record"}, status=404)
    return web.Response(status=204)


async def list_records(request: web.Request) -> web.Response:
    """GET /__sim/records/{table}: every stored row, raw, for inspection."""
    table = _known_table(request)
    return web.json_response({"result": list(_state(request).records.rows(table))})


async def seed(request: web.Request) -> web.Response:
    """POST /__sim/tables/{table}/seed {"count": N, "template": {...}}."""
    table = _known_table(request)
    body = await _body(request)
    count, template = body.get("count", 1), body.get("template", {})
    if not isinstance(count, int) or count < 0 or not isinstance(template, dict):
        return _bad_request("count must be a non-negative integer and template an object")
    created = _state(request).seed(table, count, template)
    return web.json_response(
        {
            "created": len(created),
            "sys_ids": [row["sys_id"] for row in created],
            "numbers": [row["number"] for row in created if row.get("number")],
        },
        status=201,
    )


async def expire_tokens(request: web.Request) -> web.Response:
    """POST /__sim/tokens/expire {"token": optional access token}: expire one or all access tokens."""
    token = (await _body(request)).get("token")
    expired = _state(request).oauth.expire_access_tokens(str(token) if token else None)
    return web.json_response({"expired": expired})


async def revoke_refresh_tokens(request: web.Request) -> web.Response:
    """POST /__sim/tokens/revoke {"refresh_token": optional}: revoke one or all grants."""
    token = (await _body(request)).get("refresh_token")
    revoked = _state(request).oauth.revoke_refresh_tokens(str(token) if token else None)
    return web.json_response({"revoked": revoked})


def _grant_json(request: web.Request, grant: Grant) -> dict[str, Any]:
    oauth = _state(request).oauth
    return {
        "client_id": grant.client_id,
        "refresh_token": grant.refresh_token,
        "refresh_expires_at": format_glide(grant.refresh_expires_at),
        "revoked": grant.revoked,
        "access_tokens": [
            {
                "access_token": access.token,
                "expires_at": format_glide(access.expires_at),
                "active": not access.revoked and oauth.authenticate(access.token) is not None,
            }
            for access in grant.access_tokens
        ],
    }


async def list_tokens(request: web.Request) -> web.Response:
    """GET /__sim/tokens: every grant and its tokens (e.g. to check a client revoked them)."""
    grants = _state(request).oauth.grants
    return web.json_response({"grants": [_grant_json(request, grant) for grant in grants]})


async def add_fault(request: web.Request) -> web.Response:
    """POST /__sim/faults {"kind", "count", "method", "path_prefix", "after_processing", ...}."""
    try:
        fault = _state(request).faults.add_from_json(await _body(request))
    except FaultPlanError as exc:
        return _bad_request(str(exc))
    return web.json_response(fault.to_json(), status=201)


async def list_faults(request: web.Request) -> web.Response:
    faults = _state(request).faults
    return web.json_response({"pending": [f.to_json() for f in faults.pending], "fired": faults.fired})


async def clear_faults(request: web.Request) -> web.Response:
    _state(request).faults.reset()
    return web.Response(status=204)


async def stats(request: web.Request) -> web.Response:
    """GET /__sim/stats: request counts keyed by ``METHOD /path-template``."""
    requests = _state(request).requests
    return web.json_response({"requests": dict(requests), "total": sum(requests.values())})


async def reset_stats(request: web.Request) -> web.Response:
    _state(request).requests.clear()
    return web.Response(status=204)


async def reset(request: web.Request) -> web.Response:
    """POST /__sim/reset {"keep_oauth": false}: back to a fresh instance."""
    _state(request).reset(keep_oauth=bool((await _body(request)).get("keep_oauth", False)))
    return web.Response(status=204)


def _clock_json(state: SimulatorState) -> dict[str, Any]:
    clock = state.clock
    return {"now": format_glide(clock.now()), "offset_seconds": clock.offset_seconds, "frozen": clock.frozen}


async def get_clock(request: web.Request) -> web.Response:
    return web.json_response(_clock_json(_state(request)))


async def advance_clock(request: web.Request) -> web.Response:
    """POST /__sim/clock {"advance_seconds": N, "frozen": true|false}: move simulated time forward,
    and stop or restart it."""
    body = await _body(request)
    try:
        seconds = float(body.get("advance_seconds", 0))
        _state(request).clock.advance(seconds)
    except (TypeError, ValueError):
        return _bad_request("advance_seconds must be a non-negative number")
    if "frozen" in body:
        if not isinstance(body["frozen"], bool):
            return _bad_request("frozen must be true or false")
        _state(request).clock.freeze(body["frozen"])
    return web.json_response(_clock_json(_state(request)))


async def set_rate_limit(request: web.Request) -> web.Response:
    """POST /__sim/rate-limit {"per_hour": N or null}: configure the requests-per-hour rule."""
    per_hour = (await _body(request)).get("per_hour")
    if per_hour is not None and (not isinstance(per_hour, int) or per_hour < 0):
        return _bad_request("per_hour must be a non-negative integer or null")
    limiter = _state(request).rate_limiter
    limiter.per_hour = per_hour
    limiter.reset()
    return web.json_response({"per_hour": per_hour})


async def set_read_acl(request: web.Request) -> web.Response:
    """POST /__sim/acl/{table} {"readable": false}: the integration user may no longer read the
    table (lists answer 200 [], records 404); ``true`` lifts it."""
    table = _known_table(request)
    readable = (await _body(request)).get("readable")
    if not isinstance(readable, bool):
        return _bad_request("readable must be true or false")
    unreadable = _state(request).unreadable
    if readable:
        unreadable.discard(table)
    else:
        unreadable.add(table)
    return web.json_response({"unreadable": sorted(unreadable)})


async def get_read_acls(request: web.Request) -> web.Response:
    return web.json_response({"unreadable": sorted(_state(request).unreadable)})


async def configure_push(request: web.Request) -> web.Response:
    """POST /__sim/push {"url", "key", "drop", "duplicate", "reorder", "delay_seconds"}: play the
    connector's push Business Rule from now on (see push.py)."""
    try:
        config = PushConfig.from_json(await _body(request))
    except PushConfigError as exc:
        return _bad_request(str(exc))
    _state(request).push.configure(config)
    return web.json_response({"push": config.public()})


async def get_push(request: web.Request) -> web.Response:
    """GET /__sim/push: the settings (never the key) and every call made, with its headers."""
    player = _state(request).push
    config = player.config.public() if player.config is not None else None
    return web.json_response({"push": config, "calls": [call.to_json() for call in player.calls]})


async def stop_push(request: web.Request) -> web.Response:
    """DELETE /__sim/push: the rule is gone (the calls made stay listed)."""
    _state(request).push.configure(None)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    p = CONTROL_PREFIX
    app.router.add_post(p + "/records/{table}/{sys_id}", update_record)
    app.router.add_delete(p + "/records/{table}/{sys_id}", delete_record)
    app.router.add_get(p + "/records/{table}", list_records)
    app.router.add_post(p + "/tables/{table}/seed", seed)
    app.router.add_get(p + "/tokens", list_tokens)
    app.router.add_post(p + "/tokens/expire", expire_tokens)
    app.router.add_post(p + "/tokens/revoke", revoke_refresh_tokens)
    app.router.add_post(p + "/faults", add_fault)
    app.router.add_get(p + "/faults", list_faults)
    app.router.add_delete(p + "/faults", clear_faults)
    app.router.add_get(p + "/stats", stats)
    app.router.add_post(p + "/stats/reset", reset_stats)
    app.router.add_post(p + "/reset", reset)
    app.router.add_get(p + "/clock", get_clock)
    app.router.add_post(p + "/clock", advance_clock)
    app.router.add_post(p + "/rate-limit", set_rate_limit)
    app.router.add_get(p + "/acl", get_read_acls)
    app.router.add_post(p + "/acl/{table}", set_read_acl)
    app.router.add_post(p + "/push", configure_push)
    app.router.add_get(p + "/push", get_push)
    app.router.add_delete(p + "/push", stop_push)
