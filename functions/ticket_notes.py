"""A ticket's notes: read and add the work notes and additional comments of its ServiceNow record."""

from __future__ import annotations

import azure.functions as func

from functions._http import endpoint, json_response, parse_body
from shared.bootstrap import get_container
from shared.identity import Caller, Role
from shared.note_models import AddNote

bp = func.Blueprint()


@bp.function_name("ticket_notes_list")
@bp.route(route="tickets/{id}/notes", methods=["GET"])
@endpoint(Role.READ)
async def ticket_notes_list(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response(await get_container().ticket_notes.notes(caller.tenant_id, req.route_params["id"]))


@bp.function_name("ticket_notes_add")
@bp.route(route="tickets/{id}/notes", methods=["POST"])
@endpoint(Role.READ_WRITE)
async def ticket_notes_add(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    request = parse_body(req, AddNote)
    key = req.headers.get("Idempotency-Key")
    notes = get_container().ticket_notes
    note, sent = await notes.add(caller, req.route_params["id"], request, key)
    return json_response(note, 201 if sent else 200)
