"""The operator's fleet view: every tenant's connection health (Connector.Operator of the
operator's own tenant only: `shared/identity.py`)."""

from __future__ import annotations

import azure.functions as func

from functions._http import endpoint, json_response, validate
from shared.bootstrap import get_container
from shared.identity import Caller, Role
from shared.operator_models import FleetQuery

bp = func.Blueprint()


@bp.function_name("operator_connections")
@bp.route(route="operator/connections", methods=["GET"])
@endpoint(Role.OPERATOR)
async def operator_connections(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    query = validate(FleetQuery, dict(req.params))
    return json_response(await get_container().fleet.page(query))
