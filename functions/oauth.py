"""GET /api/oauth/callback: where ServiceNow sends the admin's browser after consent.

Anonymous (Easy Auth excludes this path): the single-use `state` is what ties the call to a
tenant and an admin. Every outcome is a redirect to the portal, never anywhere else.
"""

from __future__ import annotations

import azure.functions as func
from pydantic import ValidationError

from functions._http import anonymous
from shared.bootstrap import get_container
from shared.models import CallbackParams

bp = func.Blueprint()


@bp.function_name("oauth_callback")
@bp.route(route="oauth/callback", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def oauth_callback(req: func.HttpRequest) -> func.HttpResponse:
    try:
        params = CallbackParams.model_validate(dict(req.params))
    except ValidationError:
        params = CallbackParams()  # unreadable: handled as an unknown state
    location = await get_container().provisioning.complete(params)
    # The request URL carried an authorization code: keep it out of caches and Referer headers.
    headers = {"Location": location, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return func.HttpResponse(status_code=302, headers=headers)
