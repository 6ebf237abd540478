"""Tickets: create incident and change-request tickets, list them, count them for the home page."""

from __future__ import annotations

import azure.functions as func

from functions._http import endpoint, json_response, parse_body, validate
from shared.bootstrap import get_container
from shared.identity import Caller, Role
from shared.models import CreateTicket, TicketListQuery

bp = func.Blueprint()


@bp.function_name("tickets_create")
@bp.route(route="tickets", methods=["POST"])
@endpoint(Role.READ_WRITE)
async def tickets_create(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    request = parse_body(req, CreateTicket)
    key = req.headers.get("Idempotency-Key")
    result = await get_container().ticketing.create(caller, request, key)
    location = {"Location": f"/api/tickets/{result.ticket.id}"}
    if result.ticket.status == "creating":
        # ServiceNow has not confirmed the record yet: a worker finishes it; GET the Location.
        return json_response(result.ticket, 202, location)
    if not result.created:
        return json_response(result.ticket, 200)
    return json_response(result.ticket, 201, location)


@bp.function_name("tickets_list")
@bp.route(route="tickets", methods=["GET"])
@endpoint(Role.READ)
async def tickets_list(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    query = validate(TicketListQuery, dict(req.params))
    return json_response(await get_container().ticketing.page(caller.tenant_id, query))


@bp.function_name("tickets_summary")
@bp.route(route="tickets/summary", methods=["GET"])
@endpoint(Role.READ)
async def tickets_summary(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response(await get_container().ticketing.summary(caller.tenant_id))


@bp.function_name("tickets_get")
@bp.route(route="tickets/{id}", methods=["GET"])
@endpoint(Role.READ)
async def tickets_get(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response(await get_container().ticketing.ticket(caller.tenant_id, req.route_params["id"]))
