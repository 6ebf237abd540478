"""GET /api/health: anonymous liveness probe. Touches no dependency, so it stays cheap.

Settings that fail validation make it 503 with the problems (setting names and rules, never
values), so a deployment with a wrong app setting shows as unhealthy instead of as "Succeeded".
"""

from __future__ import annotations

import azure.functions as func

from functions._http import anonymous, json_response
from shared.errors import Misconfigured
from shared.models import HealthStatus
from shared.settings import get_settings

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def health(req: func.HttpRequest) -> func.HttpResponse:
    try:
        get_settings()
    except Misconfigured as error:
        return json_response(HealthStatus(status="misconfigured", problems=error.problems), 503)
    return json_response(HealthStatus())
