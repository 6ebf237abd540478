"""HTTP plumbing shared by every blueprint: identity, body parsing and error mapping.

Every HTTP trigger goes through `endpoint`, so the 401/403 rules, the error body and the log
context are the same everywhere, and no trigger needs a try/except of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from shared.errors import AppError, BadRequest, PayloadTooLarge, error_body, error_headers, status_for
from shared.identity import Caller, Role, caller_from_headers
from shared.observability import bind_tenant, log_context
from shared.settings import get_settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
ModelT = TypeVar("ModelT", bound=BaseModel)
Handler = Callable[[func.HttpRequest, Caller], Awaitable[func.HttpResponse]]
AnonymousHandler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    if isinstance(body, BaseModel):
        payload = body.model_dump_json(by_alias=True)
    else:
        payload = json.dumps(body)
    return func.HttpResponse(payload, status_code=status, headers=headers, mimetype="application/json")


def error_response(error: AppError) -> func.HttpResponse:
    return json_response(error_body(error), status_for(error), error_headers(error))


def parse_body(req: func.HttpRequest, model: type[ModelT]) -> ModelT:
    """Parse and validate a JSON body. Field values never appear in the error (they may be secrets)."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    if not raw.strip():
        raise BadRequest("A JSON request body is required.")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("The request body is not valid JSON.") from exc
    return validate(model, data)


def validate(model: type[ModelT], data: Any) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(part) for part in err["loc"]) or "(body)", "message": err["msg"]}
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise BadRequest(
            "The request is not valid: " + "; ".join(f"{f['field']}: {f['message']}" for f in fields),
            fields=fields,
        ) from None


def endpoint(role: Role) -> Callable[[Handler], Callable[[func.HttpRequest, func.Context], Any]]:
    """Wrap a protected handler: authenticate, authorize, and map errors to the error body."""

    def decorate(handler: Handler) -> Callable[[func.HttpRequest, func.Context], Any]:
        async def run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
            async def call() -> func.HttpResponse:
                caller = caller_from_headers(req.headers, trusted=get_settings().principal_header_trusted)
                bind_tenant(caller.tenant_id)
                caller.require(role)
                return await handler(req, caller)

            return await _guarded(call, context)

        return _as_trigger(run, handler)

    return decorate


def anonymous(handler: AnonymousHandler) -> Callable[[func.HttpRequest, func.Context], Any]:
    """Wrap a handler that needs no principal (health, the OAuth callback)."""

    async def run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return await _guarded(lambda: handler(req), context)

    return _as_trigger(run, handler)


async def _guarded(
    call: Callable[[], Awaitable[func.HttpResponse]], context: func.Context
) -> func.HttpResponse:
    with log_context(invocation_id=context.invocation_id):
        try:
            return await call()
        except AppError as error:
            level = logging.WARNING if status_for(error) >= 500 else logging.INFO
            logger.log(level, "%s %s: %s", context.function_name, error.code, error.message)
            return error_response(error)
        except Exception:
            logger.exception("%s failed unexpectedly", context.function_name)
            return error_response(AppError())


def _as_trigger(run: Callable[..., Any], handler: Callable[..., Any]) -> Callable[..., Any]:
    # The worker binds arguments by parameter name, so the trigger keeps `run`'s own signature
    # (req, context); only the name and docstring come from the handler.
    run.__name__ = handler.__name__
    run.__qualname__ = handler.__qualname__
    run.__doc__ = handler.__doc__
    run.__module__ = handler.__module__
    return run
