"""Improvement actions: the tenant's Secure Score actions, their points and the tickets made for them."""

from __future__ import annotations

import azure.functions as func

from functions._http import endpoint, json_response, validate
from shared.action_models import ImprovementActionQuery
from shared.bootstrap import get_container
from shared.identity import Caller, Role

bp = func.Blueprint()


@bp.function_name("improvement_actions_list")
@bp.route(route="improvement-actions", methods=["GET"])
@endpoint(Role.READ)
async def improvement_actions_list(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    query = validate(ImprovementActionQuery, dict(req.params))
    return json_response(await get_container().improvement_actions.page(caller.tenant_id, query))
