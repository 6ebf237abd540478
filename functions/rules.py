"""Rules: a tenant's rules that create tickets for Secure Score improvement actions once a day, and
the preview of what one would create now."""

from __future__ import annotations

import azure.functions as func

from functions._http import endpoint, json_response, parse_body, validate
from shared.bootstrap import get_container
from shared.identity import Caller, Role
from shared.rule_models import RuleBody, RulePath, RulePreviewRequest

bp = func.Blueprint()


def _rule_id(req: func.HttpRequest) -> str:
    return validate(RulePath, {"ruleId": req.route_params.get("ruleId", "")}).rule_id


@bp.function_name("rules_list")
@bp.route(route="rules", methods=["GET"])
@endpoint(Role.ADMIN)
async def rules_list(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response(await get_container().rules.list(caller.tenant_id))


@bp.function_name("rules_preview")
@bp.route(route="rules/preview", methods=["POST"])
@endpoint(Role.ADMIN)
async def rules_preview(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    request = parse_body(req, RulePreviewRequest)
    return json_response(await get_container().rules.preview(caller.tenant_id, request))


@bp.function_name("rules_get")
@bp.route(route="rules/{ruleId}", methods=["GET"])
@endpoint(Role.ADMIN)
async def rules_get(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response(await get_container().rules.get(caller.tenant_id, _rule_id(req)))


@bp.function_name("rules_put")
@bp.route(route="rules/{ruleId}", methods=["PUT"])
@endpoint(Role.ADMIN)
async def rules_put(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    rule_id = _rule_id(req)
    body = parse_body(req, RuleBody)
    view, created = await get_container().rules.put(caller, rule_id, body)
    return json_response(view, 201 if created else 200)


@bp.function_name("rules_delete")
@bp.route(route="rules/{ruleId}", methods=["DELETE"])
@endpoint(Role.ADMIN)
async def rules_delete(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    await get_container().rules.delete(caller.tenant_id, _rule_id(req))
    return func.HttpResponse(status_code=204)
