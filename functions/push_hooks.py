"""Push from ServiceNow: the hook its Business Rules call, and the `push-hints` worker.

The hook is anonymous for Easy Auth (the infra excludes its path): the call authenticates with
its HMAC signature (`shared/services/push_hints.py`), and never reaches ServiceNow itself. The
worker reads the records the hints name and applies what is newer (`push_worker.py`). A message
that is not a hint message, or a batch that fails, raises: the host retries it and then moves it
to `push-hints-poison`; losing one costs nothing the poll does not repair.
"""

from __future__ import annotations

import logging

import azure.functions as func
from pydantic import ValidationError

from functions._http import anonymous, json_response
from shared.bootstrap import get_container
from shared.observability import bind_tenant, log_context
from shared.push_models import PUSH_QUEUE, SIGNATURE_HEADER, TIMESTAMP_HEADER, PushAccepted, PushHintMessage

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.function_name("servicenow_push_hook")
@bp.route(route="servicenow/hooks/{hookId}", methods=["POST"])
@anonymous
async def servicenow_push_hook(req: func.HttpRequest) -> func.HttpResponse:
    accepted = await get_container().push.receiver.receive(
        req.route_params.get("hookId", ""),
        req.headers.get(TIMESTAMP_HEADER),
        req.headers.get(SIGNATURE_HEADER),
        req.get_body() or b"",
    )
    return json_response(PushAccepted(accepted=accepted), status=202)


@bp.function_name("push_hint_worker")
@bp.queue_trigger(arg_name="message", queue_name=PUSH_QUEUE, connection="DataStorage")
async def push_hint_worker(message: func.QueueMessage, context: func.Context) -> None:
    with log_context(invocation_id=context.invocation_id):
        try:
            hints = PushHintMessage.model_validate_json(message.get_body())
        except ValidationError:
            logger.error("Message %s on %s is not a push hint message", message.id, PUSH_QUEUE)
            raise
        bind_tenant(hints.tenant_id)
        await get_container().push.worker.handle(hints)
