"""GET /api/health: anonymous liveness probe. Touches no dependency, so it stays cheap."""

from __future__ import annotations

import azure.functions as func

from functions._http import anonymous, json_response
from shared.models import HealthStatus

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def health(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(HealthStatus())
