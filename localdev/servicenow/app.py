"""The aiohttp application and the in-process way to run one or more simulated instances.

Request pipeline for everything outside ``/__sim/``:

1. count it in stats under ``METHOD /path-template``;
2. an injected fault, if one matches, replaces the response (or, with ``after_processing``,
   replaces it after the handler ran; with ``late_commit``, runs the handler after the hold);
3. on ``/api/*``: bearer token check (401 envelope), then the per-user rate-limit rule (429),
   with ``X-RateLimit-*`` on every request the rule matched;
4. the handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from . import control, oauth_routes, table_api
from .envelope import (
    TRANSACTION_CANCELLED_DETAIL,
    TRANSACTION_CANCELLED_MESSAGE,
    error_response,
    not_authenticated,
    operation_failed,
    rate_limit_exceeded,
)
from .faults import DEFAULT_RETRY_AFTER_SECONDS, Fault
from .ratelimit import RateDecision
from .state import GRANT_KEY, STATE_KEY, SimulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API_PREFIX = "/api/"
SHUTDOWN_TIMEOUT_SECONDS = 2.0


def endpoint_key(request: web.Request) -> str:
    """``METHOD /path-template`` with the table filled in and the sys_id left as ``{sys_id}``."""
    resource = request.match_info.route.resource
    if resource is None:
        return f"{request.method} {request.path}"
    template = resource.canonical
    for name, value in request.match_info.items():
        if name != "sys_id":
            template = template.replace("{" + name + "}", value)
    return f"{request.method} {template}"


def _bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("access_token")  # old docs also show ?access_token= (facts L56)


async def _fault_response(
    request: web.Request, state: SimulatorState, fault: Fault, processed: web.StreamResponse | None
) -> web.StreamResponse:
    if fault.kind == "drop":
        if request.transport is not None:
            request.transport.abort()  # no status line, no body: the client sees a dropped connection
        raise web.HTTPInternalServerError  # never written: the transport is already gone
    if fault.kind == "timeout":
        await state.hold(fault.delay_seconds)
        if processed is not None:
            return processed  # the answer arrives, but after the client's timeout
        # The platform's transaction quota cancels the request (facts L123, L126).
        return error_response(500, TRANSACTION_CANCELLED_MESSAGE, TRANSACTION_CANCELLED_DETAIL)
    if fault.kind == "429":
        limit = state.rate_limiter.per_hour or 100
        now = int(state.clock.timestamp())
        wait = fault.retry_after if fault.retry_after is not None else DEFAULT_RETRY_AFTER_SECONDS
        decision = RateDecision(False, limit, now + wait, wait)
        return rate_limit_exceeded(limit, decision.headers())
    if fault.kind == "403":
        return operation_failed()
    if fault.kind == "503":
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return error_response(
            503, "Service Unavailable", "The instance is temporarily unavailable", headers=headers
        )
    return error_response(500, "Internal server error", "An unexpected error occurred (injected fault)")


@web.middleware
async def faults_and_stats(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(control.CONTROL_PREFIX + "/"):
        return await handler(request)
    state = request.app[STATE_KEY]
    state.requests[endpoint_key(request)] += 1
    fault = state.faults.take(request.method, request.path)
    if fault is None:
        return await handler(request)
    if fault.late_commit:
        await request.read()  # the body arrived before the client gave up; keep it for the handler
        await state.hold(fault.delay_seconds)
        return await handler(request)  # carried out now; the client has long stopped listening
    processed = await handler(request) if fault.after_processing else None
    return await _fault_response(request, state, fault, processed)


@web.middleware
async def api_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication and the rate-limit rule for ``/api/*`` (facts L56, L133-137)."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    state = request.app[STATE_KEY]
    token = _bearer_token(request)
    grant = state.oauth.authenticate(token) if token else None
    if grant is None:
        return not_authenticated()
    request[GRANT_KEY] = grant
    decision = state.rate_limiter.check(grant.grant_id)
    if decision is not None and not decision.allowed:
        return rate_limit_exceeded(decision.limit, decision.headers())
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        response = error_response(400, "Requested URI does not represent any resource", None)
    except web.HTTPMethodNotAllowed:
        response = error_response(405, "Method not Supported", "Method not supported for this resource")
    if decision is not None:
        response.headers.update(decision.headers())
    return response


def build_app(state: SimulatorState | None = None) -> web.Application:
    """An aiohttp app serving one simulated instance (a fresh one unless ``state`` is given)."""
    app = web.Application(middlewares=[faults_and_stats, api_guard])
    app[STATE_KEY] = state if state is not None else SimulatorState()
    oauth_routes.add_routes(app)
    table_api.add_routes(app)
    control.add_routes(app)
    return app


@dataclass
class RunningSimulator:
    """A simulator serving on loopback; ``state`` is the live instance for seeding and inspection."""

    url: str
    state: SimulatorState
    _runner: web.AppRunner

    async def aclose(self) -> None:
        self.state.closing.set()  # release responses held by "timeout" faults
        await self.state.push.aclose()
        await self._runner.cleanup()


async def start_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clients: Mapping[str, str] | None = None,
    rate_limit_per_hour: int | None = None,
) -> RunningSimulator:
    """Serve a fresh simulated instance; ``port=0`` picks a free port. Call ``aclose()`` when done."""
    state = SimulatorState(clients=clients, rate_limit_per_hour=rate_limit_per_hour)
    runner = web.AppRunner(build_app(state), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = _bound_port(runner)
    return RunningSimulator(url=f"http://{host}:{bound_port}", state=state, _runner=runner)


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the simulator is not listening on a TCP port")
