"""HTTP plumbing shared by every blueprint: request checks, identity, body parsing, error mapping.

Every HTTP trigger goes through `endpoint` or `anonymous`, so these rules are the same everywhere
and no trigger needs a try/except of its own. In order:

1. A state-changing request (POST, PUT, PATCH, DELETE) whose `Origin` header names another site is
   refused, 403 `forbidden_origin`: a web page may only change data through the app from the app's
   own origin or one of `CORS_ALLOWED_ORIGINS`. The app's own origin is the request's scheme and
   host as the App Service front end passes them: `X-Forwarded-Proto` and `X-Forwarded-Host` when
   each is one plain value (a comma list was added to by a client, so it is ignored), else the
   request URL's scheme and the `Host` header. A request without `Origin` is not a cross-site
   browser request and is judged by its credentials alone.
2. Protected handlers: the principal (401) and the role (403).
3. A state-changing request with a body must be `Content-Type: application/json` (`charset=utf-8`
   at most), else 415 `unsupported_media_type`: the types a cross-site form can send without a
   CORS preflight (text/plain, form encodings) never reach a handler. A body without any
   Content-Type is read as JSON: only scripts send one (a browser that does, from a Blob without
   a type, also sends `Origin`, which rule 1 judges).

Every response carries `X-Request-Id`, the invocation id the log lines carry; every error body is
`{"error": {"code", "message", "requestId"[, "fields"]}}`, with caller-chosen text escaped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import azure.functions as func
from pydantic import BaseModel, ValidationError

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
from shared.untrusted import decode_json, escape_text, origin_of

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_REPORTED_FIELDS = 20  # a body with thousands of bad keys gets a bounded answer
REQUEST_ID_HEADER = "X-Request-Id"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
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
            {"field": _location(err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_input=False, include_url=False)[:MAX_REPORTED_FIELDS]
        ]
        raise BadRequest(
            "The request is not valid: " + "; ".join(f"{f['field']}: {f['message']}" for f in fields),
            fields=fields,
        ) from None


def _location(loc: tuple[int | str, ...]) -> str:
    return escape_text(".".join(str(part) for part in loc), limit=100) or "(body)"


def endpoint(role: Role) -> Callable[[Handler], Callable[[func.HttpRequest, func.Context], Any]]:
    """Wrap a protected handler: origin, authentication, role, content type; errors to the error body."""

    def decorate(handler: Handler) -> Callable[[func.HttpRequest, func.Context], Any]:
        async def run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
            async def call() -> func.HttpResponse:
                check_origin(req)
                caller = caller_from_headers(req.headers, trusted=get_settings().principal_header_trusted)
                bind_tenant(caller.tenant_id)
                caller.require(role)
                check_content_type(req)
                return await handler(req, caller)

            return await _guarded(call, context)

        return _as_trigger(run, handler)

    return decorate


def anonymous(handler: AnonymousHandler) -> Callable[[func.HttpRequest, func.Context], Any]:
    """Wrap a handler that needs no principal (health, the OAuth callback)."""

    async def run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        async def call() -> func.HttpResponse:
            check_origin(req)
            check_content_type(req)
            return await handler(req)

        return await _guarded(call, context)

    return _as_trigger(run, handler)


def check_origin(req: func.HttpRequest) -> None:
    """Refuse a state-changing request from a web page of an origin that is not allowed.

    Raises:
        ForbiddenOrigin: `Origin` is present and neither the app's own nor an allowed one.
    """
    if req.method.upper() not in STATE_CHANGING:
        return
    origin = req.headers.get("origin")
    if origin is None:
        return
    claimed = origin_of(origin)
    if claimed is not None and (claimed == own_origin(req) or claimed in get_settings().allowed_origins):
        return
    raise ForbiddenOrigin()


def own_origin(req: func.HttpRequest) -> str | None:
    """The origin the caller reached the app at (see the module docstring for the headers)."""
    try:
        url = urlsplit(req.url)
    except ValueError:
        return None
    scheme = _single_value(req.headers.get("x-forwarded-proto")) or url.scheme
    host = _single_value(req.headers.get("x-forwarded-host")) or req.headers.get("host") or url.netloc
    return origin_of(f"{scheme}://{host}")


def _single_value(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if value and "," not in value else None


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


async def _guarded(
    call: Callable[[], Awaitable[func.HttpResponse]], context: func.Context
) -> func.HttpResponse:
    request_id = context.invocation_id
    with log_context(invocation_id=request_id):
        try:
            response = await call()
        except AppError as error:
            level = logging.WARNING if status_for(error) >= 500 else logging.INFO
            message = escape_text(error.message, limit=4000)
            logger.log(level, "%s %s: %s", context.function_name, error.code, message)
            response = error_response(error, request_id)
        except Exception:
            logger.exception("%s failed unexpectedly", context.function_name)
            response = error_response(AppError(), request_id)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _as_trigger(run: Callable[..., Any], handler: Callable[..., Any]) -> Callable[..., Any]:
    # The worker binds arguments by parameter name, so the trigger keeps `run`'s own signature
    # (req, context); only the name and docstring come from the handler.
    run.__name__ = handler.__name__
    run.__qualname__ = handler.__qualname__
    run.__doc__ = handler.__doc__
    run.__module__ = handler.__module__
    return run
