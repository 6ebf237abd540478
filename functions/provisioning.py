"""Provisioning: connect a tenant's ServiceNow, see its status, re-authorize, name states, switch
the Secure Score write-back, remove, test the connection."""

from __future__ import annotations

import azure.functions as func

from functions._http import endpoint, json_response, parse_body
from shared.bootstrap import get_container
from shared.identity import Caller, Role
from shared.models import ConfigureConnection, StateNamesUpdate
from shared.remediation_models import SecureScoreUpdate

bp = func.Blueprint()


@bp.function_name("provisioning_status")
@bp.route(route="provisioning", methods=["GET"])
@endpoint(Role.READ)
async def provisioning_status(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response(await get_container().provisioning.status(caller.tenant_id))


@bp.function_name("provisioning_configure")
@bp.route(route="provisioning", methods=["PUT"])
@endpoint(Role.ADMIN)
async def provisioning_configure(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    request = parse_body(req, ConfigureConnection)
    return json_response(await get_container().provisioning.configure(caller, request))


@bp.function_name("provisioning_authorize")
@bp.route(route="provisioning/authorize", methods=["POST"])
@endpoint(Role.ADMIN)
async def provisioning_authorize(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response(await get_container().provisioning.authorize(caller))


@bp.function_name("provisioning_state_names")
@bp.route(route="provisioning/state-names", methods=["PUT"])
@endpoint(Role.ADMIN)
async def provisioning_state_names(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    update = parse_body(req, StateNamesUpdate)
    return json_response(await get_container().provisioning.set_state_names(caller.tenant_id, update))


@bp.function_name("provisioning_secure_score")
@bp.route(route="provisioning/secure-score", methods=["PUT"])
@endpoint(Role.ADMIN)
async def provisioning_secure_score(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    update = parse_body(req, SecureScoreUpdate)
    return json_response(await get_container().provisioning.set_secure_score(caller.tenant_id, update))


@bp.function_name("provisioning_remove")
@bp.route(route="provisioning", methods=["DELETE"])
@endpoint(Role.ADMIN)
async def provisioning_remove(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    await get_container().provisioning.remove(caller.tenant_id)
    return func.HttpResponse(status_code=204)


@bp.function_name("provisioning_diagnostics")
@bp.route(route="provisioning/diagnostics", methods=["POST"])
@endpoint(Role.ADMIN)
async def provisioning_diagnostics(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response(await get_container().diagnostics.run(caller.tenant_id))
