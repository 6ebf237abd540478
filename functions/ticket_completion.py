"""The `ticket-creates` worker: finishes tickets whose create ServiceNow did not confirm (answered
202 `creating`), one round per message (`shared/services/ticket_completion.py`).

A message that is not one of ours, or a round that fails unexpectedly, raises: the host retries it
(host.json `maxDequeueCount`) and then moves it to `ticket-creates-poison`, where it is seen. Its
ticket is not lost for that: the sync timer queues a `creating` ticket again once nobody worked on
it for a while (`TicketCompletion.sweep`).
"""

from __future__ import annotations

import logging

import azure.functions as func
from pydantic import ValidationError

from shared.bootstrap import get_container
from shared.models import TICKET_CREATE_QUEUE, PendingCreate
from shared.observability import bind_tenant, log_context

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.function_name("ticket_completion_worker")
@bp.queue_trigger(arg_name="message", queue_name=TICKET_CREATE_QUEUE, connection="DataStorage")
async def ticket_completion_worker(message: func.QueueMessage, context: func.Context) -> None:
    with log_context(invocation_id=context.invocation_id):
        try:
            pending = PendingCreate.model_validate_json(message.get_body())
        except ValidationError:
            logger.error("Message %s on %s is not a pending ticket create", message.id, TICKET_CREATE_QUEUE)
            raise
        bind_tenant(pending.tenant_id)
        outcome = await get_container().ticketing.complete(pending)
        logger.info(
            "Ticket %s: round %d ended %s (attempt %s)",
            pending.ticket_id,
            pending.round + 1,
            outcome,
            message.dequeue_count,
        )
