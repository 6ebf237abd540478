"""Sync: the timer that fans out one message per connected tenant, the worker that syncs one tenant,
and `POST /api/sync` for an admin who wants it now.

The timer only lists and enqueues (and deletes a bounded number of long-expired OAuth states and
idempotency claims, and queues again a bounded number of `creating` tickets whose message was lost),
so it stays cheap however many tenants there are; the queue spreads the work over instances, and
one tenant's failure is only its own message's.
"""

from __future__ import annotations

import logging

import azure.functions as func
from pydantic import ValidationError

from functions._http import endpoint, json_response
from shared.bootstrap import get_container
from shared.identity import Caller, Role
from shared.models import SYNC_QUEUE, SyncRequest
from shared.observability import bind_tenant, log_context

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.function_name("sync_timer")
@bp.timer_trigger(
    arg_name="timer",
    schedule="%SYNC_SCHEDULE%",
    run_on_startup=False,  # it would fire on every restart and scale-out
    use_monitor=True,  # a missed schedule (host down) runs once when the host is back
)
async def sync_timer(timer: func.TimerRequest, context: func.Context) -> None:
    with log_context(invocation_id=context.invocation_id):
        if timer.past_due:
            logger.info("The sync timer is past due; running now")
        container = get_container()
        syncing, ticketing = container.syncing, container.ticketing
        try:
            await syncing.enqueue_connected("timer")
        finally:
            # Housekeeping that rides on the timer: expired OAuth states and idempotency claims,
            # lost ticket-create messages (bounded; never raises).
            await syncing.purge_expired_states()
            await ticketing.purge_expired_claims()
            await ticketing.sweep_pending_creates()


@bp.function_name("sync_worker")
@bp.queue_trigger(arg_name="message", queue_name=SYNC_QUEUE, connection="DataStorage")
async def sync_worker(message: func.QueueMessage, context: func.Context) -> None:
    with log_context(invocation_id=context.invocation_id):
        try:
            request = SyncRequest.model_validate_json(message.get_body())
        except ValidationError:
            # Retrying cannot fix it, but raising sends it to the poison queue, where it is seen.
            logger.error("Message %s on %s is not a sync request", message.id, SYNC_QUEUE)
            raise
        bind_tenant(request.tenant_id)
        logger.info(
            "Syncing (%s sync requested at %s, attempt %s)",
            request.reason,
            request.requested_at,
            message.dequeue_count,
        )
        await get_container().syncing.sync_tenant(request)


@bp.function_name("sync_now")
@bp.route(route="sync", methods=["POST"])
@endpoint(Role.ADMIN)
async def sync_now(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response(await get_container().syncing.request_sync(caller.tenant_id), status=202)
