"""A small stand-in for `func start`: serves, schedules and dequeues the app's own functions.

It reads the function app the way the Python worker does (`app.get_functions()`), then:
- serves HTTP triggers on PORT under host.json's route prefix, with route parameters and methods;
- fires timer triggers on their NCRONTAB schedules (`%SETTING%` resolved from the environment);
- runs queue triggers from Azurite queues: base64 bodies, dequeue counts, and a `<queue>-poison`
  copy after host.json's `maxDequeueCount` failed attempts;
- accepts `POST /admin/functions/{name}` (202) to run any non-HTTP function now, like the real
  host's admin API. `GET /admin/invocations/{id}` (local only) tells how that run ended.

It is not a framework: no keys, no bindings beyond the triggers, no scale-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from localdev.functions_index import (
    HttpFunction,
    IndexedFunction,
    QueueFunction,
    TimerFunction,
    index,
)
from localdev.queues import QueuePoller
from shared.observability import log_context

logger = logging.getLogger("localdev.host")


class LocalContext(func.Context):
    """The `context` argument the worker passes to functions that ask for it."""

    def __init__(self, invocation_id: str, function_name: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return os.getcwd()

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> Any:
        return None


def parse_timespan(value: str | None, default: float) -> float:
    """host.json timespans are `hh:mm:ss`."""
    if not value:
        return default
    hours, minutes, seconds = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


class HostConfig:
    """The parts of host.json the local host honours."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        extensions = document.get("extensions", {})
        self.route_prefix: str = extensions.get("http", {}).get("routePrefix", "api")
        queues = extensions.get("queues", {})
        self.max_dequeue_count: int = int(queues.get("maxDequeueCount", 5))
        self.visibility_timeout_s = parse_timespan(queues.get("visibilityTimeout"), 0.0)
        self.max_polling_interval_s = parse_timespan(queues.get("maxPollingInterval"), 60.0)
        self.batch_size: int = int(queues.get("batchSize", 16))

    @classmethod
    def load(cls, path: Path) -> HostConfig:
        return cls(json.loads(path.read_text(encoding="utf-8")))


class LocalHost:
    def __init__(
        self,
        app: func.FunctionApp,
        config: HostConfig,
        *,
        environ: Mapping[str, str] | None = None,
        max_polling_interval_s: float | None = None,
    ) -> None:
        self._env = os.environ if environ is None else environ
        self._config = config
        self._functions = index(app, config.route_prefix, self._env)
        self._by_name = {f.name.lower(): f for f in self._functions}
        self._polling_s = max_polling_interval_s or config.max_polling_interval_s
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._pollers: list[QueuePoller] = []
        self._runner: web.AppRunner | None = None
        self.invocations: dict[str, str] = {}
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 7071) -> str:
        server = web.Application(client_max_size=1024 * 1024)
        server.router.add_post("/admin/functions/{name}", self._admin_invoke)
        server.router.add_get("/admin/invocations/{id}", self._admin_status)
        server.router.add_route("*", "/{tail:.*}", self._serve_http)
        self._runner = web.AppRunner(server, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{bound_port}"
        for function in self._functions:
            if isinstance(function, TimerFunction):
                self._tasks.append(asyncio.create_task(self._run_timer(function)))
            elif isinstance(function, QueueFunction):
                poller = QueuePoller(
                    function,
                    connection_string=self._connection_string(function.connection),
                    invoke=self._invoke,
                    max_dequeue_count=self._config.max_dequeue_count,
                    visibility_timeout_s=self._config.visibility_timeout_s,
                    max_polling_interval_s=self._polling_s,
                    batch_size=self._config.batch_size,
                )
                self._pollers.append(poller)
                self._tasks.append(asyncio.create_task(poller.run()))
        names = ", ".join(f"{f.name} ({f.trigger_type})" for f in self._functions)
        logger.info("Host started on %s with functions: %s", self.url, names)
        return self.url

    async def stop(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for poller in self._pollers:
            await poller.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
        logger.info("Host stopped")

    def set_queue_visibility_timeout(self, seconds: float) -> None:
        """Change host.json's queues `visibilityTimeout` on the running host (tests: reach the
        poison queue in a second rather than after 4 x 10 s)."""
        self._config.visibility_timeout_s = seconds
        for poller in self._pollers:
            poller.retry_visibility_s = int(seconds)

    def _connection_string(self, setting: str) -> str:
        value = self._env.get(setting)
        if not value:
            raise RuntimeError(
                f"queue trigger connection {setting!r} is not set: the local host needs a connection string"
            )
        return value

    async def _invoke(
        self, function: IndexedFunction, argument: Any, invocation_id: str | None = None
    ) -> Any:
        invocation_id = invocation_id or str(uuid.uuid4())
        kwargs: dict[str, Any] = {function.trigger_arg: argument}
        if function.takes_context:
            kwargs["context"] = LocalContext(invocation_id, function.name)
        with log_context(invocation_id=invocation_id):
            return await self._call(function, kwargs, invocation_id)

    async def _call(self, function: IndexedFunction, kwargs: dict[str, Any], invocation_id: str) -> Any:
        logger.info("Executing 'Functions.%s' (Id=%s)", function.name, invocation_id)
        started = time.perf_counter()
        try:
            if asyncio.iscoroutinefunction(function.user_function):
                result = await function.user_function(**kwargs)
            else:
                result = await asyncio.to_thread(function.user_function, **kwargs)
        except Exception:
            elapsed = (time.perf_counter() - started) * 1000
            logger.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)",
                function.name,
                invocation_id,
                elapsed,
            )
            raise
        elapsed = (time.perf_counter() - started) * 1000
        # An HTTP function that answered 404 did not "succeed" for whoever reads the log: say the status.
        outcome = f"status {result.status_code}" if isinstance(result, func.HttpResponse) else "Succeeded"
        logger.info(
            "Executed 'Functions.%s' (%s, Id=%s, Duration=%.0fms)",
            function.name,
            outcome,
            invocation_id,
            elapsed,
        )
        return result

    async def _serve_http(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        allowed: set[str] = set()
        for function in self._functions:
            if not isinstance(function, HttpFunction):
                continue
            params = function.route.match(path)
            if params is None:
                continue
            if request.method not in function.methods:
                allowed |= function.methods
                continue
            return await self._call_http(function, request, params)
        if allowed:
            body = {
                "error": {"code": "method_not_allowed", "message": f"{request.method} is not allowed here."}
            }
            return web.json_response(body, status=405, headers={"Allow": ", ".join(sorted(allowed))})
        return web.json_response(
            {"error": {"code": "not_found", "message": "No function serves this route."}}, status=404
        )

    async def _call_http(
        self, function: HttpFunction, request: web.Request, params: dict[str, str]
    ) -> web.Response:
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params={key: request.query[key] for key in request.query},
            route_params=params,
            body=await request.read(),
        )
        try:
            response = await self._invoke(function, http_request)
        except Exception:
            return web.Response(status=500)
        if not isinstance(response, func.HttpResponse):
            return web.Response(
                status=204 if response is None else 200, text=None if response is None else str(response)
            )
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
        return web.Response(
            status=response.status_code,
            body=response.get_body(),
            headers=headers,
            content_type=response.mimetype,
            charset=response.charset if response.mimetype.startswith(("text/", "application/json")) else None,
        )

    async def _run_timer(self, function: TimerFunction) -> None:
        if function.run_on_startup:
            await self._fire_timer(function, past_due=False)
        while True:
            due = function.schedule.next_after(datetime.now(UTC))
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            past_due = (datetime.now(UTC) - due).total_seconds() > 1
            await self._fire_timer(function, past_due=past_due)

    async def _fire_timer(self, function: TimerFunction, *, past_due: bool) -> None:
        with contextlib.suppress(Exception):  # a failed run is logged; the schedule goes on
            await self._invoke(function, TimerRequest(past_due=past_due))

    async def _admin_invoke(self, request: web.Request) -> web.Response:
        function = self._by_name.get(request.match_info["name"].lower())
        if function is None:
            return web.json_response(
                {"error": {"code": "not_found", "message": "No such function."}}, status=404
            )
        if isinstance(function, HttpFunction):
            return web.json_response(
                {"error": {"code": "bad_request", "message": "HTTP functions are invoked over HTTP."}},
                status=400,
            )
        raw = await request.read()
        payload = json.loads(raw) if raw.strip() else {}
        argument: Any
        if isinstance(function, QueueFunction):
            argument = QueueMessage(
                id=str(uuid.uuid4()), body=str(payload.get("input", "")).encode(), dequeue_count=1
            )
        else:
            argument = TimerRequest(past_due=False)
        invocation_id = str(uuid.uuid4())
        self.invocations[invocation_id] = "running"
        task = asyncio.create_task(self._admin_run(function, argument, invocation_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return web.Response(status=202, headers={"x-local-invocation-id": invocation_id})

    async def _admin_run(self, function: IndexedFunction, argument: Any, invocation_id: str) -> None:
        try:
            await self._invoke(function, argument, invocation_id)
        except Exception:
            self.invocations[invocation_id] = "failed"
        else:
            self.invocations[invocation_id] = "succeeded"

    async def _admin_status(self, request: web.Request) -> web.Response:
        status = self.invocations.get(request.match_info["id"])
        if status is None:
            return web.json_response(
                {"error": {"code": "not_found", "message": "No such invocation."}}, status=404
            )
        return web.json_response({"status": status})
