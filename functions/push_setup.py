"""An admin's setup of push from ServiceNow: the hook URL and Business Rules, and the rotate that
turns push on and shows the key once (`shared/services/push_setup.py`)."""

from __future__ import annotations

import azure.functions as func

from functions._http import endpoint, json_response
from shared.bootstrap import get_container
from shared.identity import Caller, Role

bp = func.Blueprint()


@bp.function_name("provisioning_push")
@bp.route(route="provisioning/push", methods=["GET"])
@endpoint(Role.ADMIN)
async def provisioning_push(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response(await get_container().push.setup.setup(caller.tenant_id))


@bp.function_name("provisioning_push_rotate")
@bp.route(route="provisioning/push/rotate", methods=["POST"])
@endpoint(Role.ADMIN)
async def provisioning_push_rotate(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    rotated = await get_container().push.setup.rotate(caller.tenant_id)
    # The key is in this answer only: no cache on the way may keep it.
    return json_response(rotated, headers={"Cache-Control": "no-store"})
