"""A small function app for testing the local host itself: one function of each kind it runs.

Its protected endpoint goes through the same `functions._http.endpoint` wrapper as the product's,
so the 401/403 rules are checked through the host as a client sees them.
"""

from __future__ import annotations

import azure.functions as func

from functions._http import endpoint, json_response
from shared.identity import Caller, Role

TIMER_RUNS: list[bool] = []
QUEUE_DELIVERIES: list[tuple[str, int]] = []

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.function_name("echo")
@app.route(route="things/{category}/{id}", methods=["GET", "POST"])
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(
        {
            "method": req.method,
            "route": dict(req.route_params),
            "query": dict(req.params),
            "body": req.get_body().decode(),
        },
        status=200,
        headers={"X-Echo": "yes"},
    )


@app.function_name("things_summary")
@app.route(route="things/summary", methods=["GET"])
def things_summary(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("summary", mimetype="text/plain")


@app.function_name("admin_only")
@app.route(route="admin-only", methods=["GET"])
@endpoint(Role.ADMIN)
async def admin_only(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response({"tenant": caller.tenant_id})


@app.function_name("tick")
@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_TICK_SCHEDULE%", use_monitor=False)
async def tick(timer: func.TimerRequest) -> None:
    TIMER_RUNS.append(timer.past_due)


@app.function_name("work")
@app.queue_trigger(arg_name="message", queue_name="%SAMPLE_QUEUE%", connection="SampleStorage")
def work(message: func.QueueMessage, context: func.Context) -> None:
    body = message.get_body().decode()
    QUEUE_DELIVERIES.append((body, message.dequeue_count or 0))
    if body.startswith("fail"):
        raise RuntimeError(f"{context.function_name} refuses {body}")
