"""HTTP plumbing shared by every blueprint: request checks, identity, body parsing, error mapping.

Every HTTP trigger goes through `endpoint` or `anonymous`, so these rules are the same everywhere
and no trigger needs a try/except of its own. In order:

1. A state-changing request (POST, PUT, PATCH, DELETE) whose `Origin` header names another site is
   refused, 403 `forbidden_origin`: a web page may only change data through the app from the app's
   own origin or one of `CORS_ALLOWED_ORIGINS` (`_cors.allowed_origin`, which also decides the
   CORS headers). A request without `Origin` is not a cross-site browser request and is judged by
   its credentials alone.
2. Protected handlers: the principal (401) and the role (403).
3. A state-changing request with a body must be `Content-Type: application/json` (`charset=utf-8`
   at most), else 415 `unsupported_media_type`: the types a cross-site form can send without a
   CORS preflight (text/plain, form encodings) never reach a handler. A body without any
   Content-Type is read as JSON: only scripts send one (a browser that does, from a Blob without
   a type, also sends `Origin`, which rule 1 judges).

Every response carries `X-Request-Id`, the invocation id the log lines carry, and the CORS headers
(`_cors.add_cors_headers`); every error body is `{"error": {"code", "message", "requestId"[,
"fields"]}}`, with caller-chosen text escaped. Every request is logged in one line: method, route
template, status, duration, tenant (once known) and request id; INFO, WARNING for a 5xx, ERROR
with the traceback for an unexpected exception.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import azure.functions as func
from pydantic import BaseModel, ValidationError

from functions._cors import add_cors_headers, allowed_origin
from shared.errors import (
    AppError,
    BadRequest,
    ForbiddenOrigin,
    PayloadTooLarge,
    UnsupportedMediaType,
    error_body,
    error_headers,
    status_for,
)
from shared.identity import Caller, Role, caller_from_headers
from shared.observability import bind_tenant, log_context
from shared.settings import get_settings
from shared.untrusted import decode_json, escape_text

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_REPORTED_FIELDS = 20  # a body with thousands of bad keys gets a bounded answer
REQUEST_ID_HEADER = "X-Request-Id"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What pydantic puts before the message of a ValueError or assert in a validator: not for a caller.
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")
ModelT = TypeVar("ModelT", bound=BaseModel)
Handler = Callable[[func.HttpRequest, Caller], Awaitable[func.HttpResponse]]
AnonymousHandler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    if isinstance(body, BaseModel):
        payload = body.model_dump_json(by_alias=True)
    else:
        payload = json.dumps(body)
    return func.HttpResponse(payload, status_code=status, headers=headers, mimetype="application/json")


def error_response(error: AppError, request_id: str | None = None) -> func.HttpResponse:
    """The error body, with every text escaped: messages may quote what a caller sent."""
    body = error_body(error)
    detail = body["error"]
    detail["message"] = escape_text(detail["message"], limit=4000)
    if "fields" in detail:
        detail["fields"] = [
            {key: escape_text(str(value), limit=400) for key, value in field.items()}
            for field in detail["fields"][:MAX_REPORTED_FIELDS]
        ]
    if request_id:
        detail["requestId"] = request_id
    return json_response(body, status_for(error), error_headers(error))


def parse_body(req: func.HttpRequest, model: type[ModelT]) -> ModelT:
    """Parse and validate a JSON body. Field values never appear in the error (they may be secrets)."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    if not raw.strip():
        raise BadRequest("A JSON request body is required.")
    try:
        data = decode_json(raw, max_bytes=MAX_BODY_BYTES)
    except ValueError as exc:
        raise BadRequest("The request body is not valid JSON.") from exc
    return validate(model, data)


def validate(model: type[ModelT], data: Any) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Locations can hold body keys and query parameter names the caller chose: kept short
        # here, escaped in `error_response`.
        fields = [
            {"field": _location(err["loc"]), "message": _message(err["msg"])}
            for err in exc.errors(include_input=False, include_url=False)[:MAX_REPORTED_FIELDS]
        ]
        raise BadRequest(
            "The request is not valid: " + "; ".join(f"{f['field']}: {f['message']}" for f in fields),
            fields=fields,
        ) from None


def _location(loc: tuple[int | str, ...]) -> str:
    return escape_text(".".join(str(part) for part in loc), limit=100) or "(body)"


def _message(message: str) -> str:
    for prefix in _PYDANTIC_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def endpoint(role: Role) -> Callable[[Handler], Callable[[func.HttpRequest, func.Context], Any]]:
    """Wrap a protected handler: origin, authentication, role, content type; errors to the error body."""

    def decorate(handler: Handler) -> Callable[[func.HttpRequest, func.Context], Any]:
        async def run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
            async def call(exchange: _Exchange) -> func.HttpResponse:
                check_origin(req)
                caller = caller_from_headers(req.headers, trusted=get_settings().principal_header_trusted)
                bind_tenant(caller.tenant_id)
                exchange.tenant_id = caller.tenant_id
                caller.require(role)
                check_content_type(req)
                return await handler(req, caller)

            return await _guarded(req, context, call)

        return _as_trigger(run, handler, role)

    return decorate


def anonymous(handler: AnonymousHandler) -> Callable[[func.HttpRequest, func.Context], Any]:
    """Wrap a handler that needs no principal (health, the OAuth callback, CORS preflights)."""

    async def run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        async def call(_: _Exchange) -> func.HttpResponse:
            check_origin(req)
            check_content_type(req)
            return await handler(req)

        return await _guarded(req, context, call)

    return _as_trigger(run, handler, None)


def check_origin(req: func.HttpRequest) -> None:
    """Refuse a state-changing request from a web page of an origin that is not allowed.

    Raises:
        ForbiddenOrigin: `Origin` is present and neither the app's own nor an allowed one.
    """
    if req.method.upper() not in STATE_CHANGING or req.headers.get("origin") is None:
        return
    if allowed_origin(req) is None:
        raise ForbiddenOrigin()


def check_content_type(req: func.HttpRequest) -> None:
    """Raises UnsupportedMediaType: a state-changing request's body is declared as not JSON."""
    if req.method.upper() not in STATE_CHANGING or not req.get_body():
        return
    content_type = req.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        raise UnsupportedMediaType()


def is_json(content_type: str) -> bool:
    """`application/json`, optionally with `charset=utf-8` (case and spaces do not matter)."""
    media_type, *parameters = (part.strip().lower() for part in content_type.split(";"))
    charsets = [p.replace(" ", "").replace('"', "") for p in parameters if p]
    return media_type == "application/json" and all(p == "charset=utf-8" for p in charsets)


@dataclass
class _Exchange:
    """What the request's log line says besides the answer: the tenant once known, the error."""

    started: float
    tenant_id: str | None = None
    error: AppError | None = None
    unexpected: Exception | None = None


async def _guarded(
    req: func.HttpRequest,
    context: func.Context,
    call: Callable[[_Exchange], Awaitable[func.HttpResponse]],
) -> func.HttpResponse:
    request_id = context.invocation_id
    exchange = _Exchange(started=time.perf_counter())
    with log_context(invocation_id=request_id):
        try:
            response = await call(exchange)
        except AppError as error:
            exchange.error = error
            response = error_response(error, request_id)
        except Exception as unexpected:
            exchange.error, exchange.unexpected = AppError(), unexpected
            response = error_response(exchange.error, request_id)
        response.headers[REQUEST_ID_HEADER] = request_id
        add_cors_headers(req, response)
        _log_request(req, context, response.status_code, exchange)
    return response


def _log_request(req: func.HttpRequest, context: func.Context, status: int, exchange: _Exchange) -> None:
    """The request's one line: INFO, WARNING for a 5xx, ERROR (with the traceback) for a bug."""
    level = logging.INFO if status < 500 else logging.WARNING
    if exchange.unexpected is not None:
        level = logging.ERROR
    error = exchange.error
    logger.log(
        level,
        "%s %s %d (Duration=%dms, tenant=%s, requestId=%s)%s",
        escape_text(req.method, limit=16),
        escape_text(route_template(req) or context.function_name, limit=200),
        status,
        round((time.perf_counter() - exchange.started) * 1000),
        exchange.tenant_id or "-",
        context.invocation_id,
        f" {error.code}: {escape_text(error.message, limit=4000)}" if error else "",
        exc_info=exchange.unexpected,
    )


def route_template(req: func.HttpRequest) -> str | None:
    """The route the request matched, each route value replaced by its parameter's name
    (`api/tickets/{id}`): a log names the route, never what a caller put in the path. None when
    the path does not show where a value is."""
    try:
        segments = [unquote(segment) for segment in urlsplit(req.url).path.split("/") if segment]
    except ValueError:
        return None
    for name, value in req.route_params.items():
        if not value:
            continue
        # One segment (an encoded `/` included), or several (a catch-all).
        for parts in ([value], [part for part in value.split("/") if part]):
            found = [
                i for i in range(len(segments) - len(parts) + 1) if segments[i : i + len(parts)] == parts
            ]
            if found:
                # The last match: route values follow the literal segments in every route of this app.
                segments[found[-1] : found[-1] + len(parts)] = ["{" + name + "}"]
                break
        else:
            return None
    return "/".join(segments)


_ROLE_ATTRIBUTE = "required_role"


def required_role(trigger: Callable[..., Any]) -> Role | None:
    """The role `endpoint` demands of a trigger's callers (the OpenAPI document states it); None
    for an `anonymous` one.

    Raises:
        LookupError: the trigger was wrapped by neither.
    """
    if not hasattr(trigger, _ROLE_ATTRIBUTE):
        raise LookupError(
            f"{getattr(trigger, '__name__', trigger)} is wrapped by neither endpoint nor anonymous"
        )
    role: Role | None = getattr(trigger, _ROLE_ATTRIBUTE)
    return role


def _as_trigger(
    run: Callable[..., Any], handler: Callable[..., Any], role: Role | None
) -> Callable[..., Any]:
    # The worker binds arguments by parameter name, so the trigger keeps `run`'s own signature
    # (req, context); only the name and docstring come from the handler.
    setattr(run, _ROLE_ATTRIBUTE, role)
    run.__name__ = handler.__name__
    run.__qualname__ = handler.__qualname__
    run.__doc__ = handler.__doc__
    run.__module__ = handler.__module__
    return run
