"""OPTIONS on every route: the CORS preflight a browser sends before a cross-origin request.

Registered as a function so that the Functions host hands preflights to the app (no platform
CORS is configured; see `functions/_cors.py`). A route's own functions do not take OPTIONS, so
the host's routing falls through to this catch-all. Anonymous: a browser sends a preflight
without credentials, and App Service Authentication lets one through.
"""

from __future__ import annotations

import azure.functions as func

from functions._cors import preflight
from functions._http import anonymous

bp = func.Blueprint()


@bp.function_name("cors_preflight")
@bp.route(route="{*path}", methods=["OPTIONS"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def cors_preflight(req: func.HttpRequest) -> func.HttpResponse:
    return preflight(req)
