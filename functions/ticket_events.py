"""A ticket's timeline: what happened to it, oldest first."""

from __future__ import annotations

import azure.functions as func

from functions._http import endpoint, json_response
from shared.bootstrap import get_container
from shared.identity import Caller, Role

bp = func.Blueprint()


@bp.function_name("ticket_events_list")
@bp.route(route="tickets/{id}/events", methods=["GET"])
@endpoint(Role.READ)
async def ticket_events_list(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    timelines = get_container().ticket_timelines
    return json_response(await timelines.timeline(caller.tenant_id, req.route_params["id"]))
