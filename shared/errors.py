"""One exception tree for the whole app, and the one table that maps it to HTTP.

    AppError                          500 internal_error
    ├── BadRequest                    400 validation_error   (fields: what failed)
    │   ├── PayloadTooLarge           413 payload_too_large
    │   └── UnsupportedMediaType      415 unsupported_media_type (a body that is not application/json)
    ├── Unauthenticated               401 unauthenticated
    ├── Forbidden                     403 forbidden
    │   └── ForbiddenOrigin           403 forbidden_origin (a state-changing request from a browser
    │                                               page of an origin that is not allowed)
    ├── NotFound                      404 not_found
    ├── Conflict                      409 conflict
    │   ├── ConnectionNotReady        409 connection_not_ready
    │   ├── ReauthorizationRequired   409 reauthorization_required
    │   ├── IdempotencyKeyInProgress  409 idempotency_key_in_progress (carries retry_after seconds)
    │   ├── TicketDeletedInServiceNow 409 ticket_deleted_in_servicenow (its record is gone)
    │   ├── TicketNotCreated          409 ticket_not_created (no ServiceNow record yet, or ever)
    │   └── PreconditionFailed        409 conflict  (a conditional table write lost a race; the
    │                                               services handle it, one that escapes is a 409)
    ├── IdempotencyKeyReused          422 idempotency_key_reused
    ├── TooManyRequests               429 rate_limited (carries retry_after seconds)
    ├── AuthorizationNotCompleted     400 authorization_not_completed (the OAuth callback's reason for
    │                                               the portal redirect; never an HTTP body)
    ├── DependencyNotConfigured       503 dependency_not_configured (a setting it needs is missing)
    ├── Misconfigured                 503 misconfigured (the app's settings fail validation;
    │                                                   carries problems: names and rules, no values)
    └── UpstreamError                 502 upstream_error      (a dependency answered, but wrongly)
        ├── UpstreamRejected          502 upstream_rejected   (ServiceNow refused the record)
        ├── UpstreamUnavailable       503 upstream_unavailable (down, timing out or rate limited;
        │   │                                                   carries retry_after seconds)
        │   └── SyncEnqueueFailed     503 sync_enqueue_failed (some of the timer's messages failed)
        ├── TokenRefused              502 upstream_error      (ServiceNow refused a freshly refreshed
        │                                                       access token: not fixed by retrying)
        └── GrantRevoked              409 reauthorization_required (the OAuth grant is dead)

Adapters convert SDK and HTTP failures into these at their boundary (`raise ... from exc`), and
messages are written for a person: they never carry secret values or raw upstream bodies that
might. Nothing else is raised across a layer: an exception class outside this module is private
to one function.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error the app raises on purpose."""

    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Something went wrong on our side. Try again later."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class BadRequest(AppError):
    code = "validation_error"
    default_message = "The request is not valid."

    def __init__(self, message: str | None = None, *, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or []


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"
    default_message = "The request body is too large."


class UnsupportedMediaType(BadRequest):
    code = "unsupported_media_type"
    default_message = "The request body must be JSON, sent with Content-Type: application/json."


class Unauthenticated(AppError):
    code = "unauthenticated"
    default_message = "Sign in first: the request carries no authenticated principal."


class Forbidden(AppError):
    code = "forbidden"
    default_message = "You do not have the role this operation needs."


class ForbiddenOrigin(Forbidden):
    code = "forbidden_origin"
    default_message = (
        "This request came from a web page of another site (its Origin header is not allowed), "
        "so it was refused. Use the portal, or ask an operator to add the origin to CORS_ALLOWED_ORIGINS."
    )


class NotFound(AppError):
    code = "not_found"
    default_message = "Not found."


class Conflict(AppError):
    code = "conflict"
    default_message = "The request conflicts with the current state."


class ConnectionNotReady(Conflict):
    code = "connection_not_ready"
    default_message = "ServiceNow is not connected for this tenant yet. An admin must connect it first."


class ReauthorizationRequired(Conflict):
    code = "reauthorization_required"
    default_message = "The ServiceNow authorization has expired or was revoked. An admin must re-authorize."


class IdempotencyKeyInProgress(Conflict):
    code = "idempotency_key_in_progress"
    default_message = "A request with this Idempotency-Key is still being processed. Retry it shortly."

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class TicketDeletedInServiceNow(Conflict):
    code = "ticket_deleted_in_servicenow"
    default_message = "The ticket's record was deleted in ServiceNow."


class TicketNotCreated(Conflict):
    """The ticket is `creating` (ServiceNow has not confirmed its record) or `failed` (it has none):
    nothing can be added to a record that does not exist."""

    code = "ticket_not_created"
    default_message = "The ticket has no ServiceNow record yet."


class PreconditionFailed(Conflict):
    """Another writer changed or removed the row first (ETag mismatch, or it already exists)."""

    default_message = "The record was changed by another request at the same time. Try again."


class AuthorizationNotCompleted(AppError):
    """The OAuth callback could not complete; `reason` is the code the portal redirect carries."""

    code = "authorization_not_completed"
    default_message = "The ServiceNow authorization could not be completed."

    def __init__(self, reason: str) -> None:
        super().__init__(f"The ServiceNow authorization could not be completed ({reason}).")
        self.reason = reason


class DependencyNotConfigured(AppError):
    code = "dependency_not_configured"
    default_message = "A service this operation needs is not configured."


class Misconfigured(AppError):
    code = "misconfigured"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("The app is misconfigured: " + "; ".join(problems) + ". An operator must fix it.")
        self.problems = problems


class IdempotencyKeyReused(AppError):
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request body."


class TooManyRequests(AppError):
    code = "rate_limited"
    default_message = "Too many requests. Retry after the number of seconds Retry-After gives."

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class UpstreamError(AppError):
    code = "upstream_error"
    default_message = "A service we depend on answered unexpectedly."


class UpstreamRejected(UpstreamError):
    code = "upstream_rejected"
    default_message = "ServiceNow rejected the request."


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"
    default_message = "A service we depend on is unavailable or rate limiting us. Try again later."

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int = 30,
        hinted: bool = False,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
        # True when the upstream itself said how long to wait (Retry-After), not our own guess.
        self.hinted = hinted
        # True when the request may have been carried out all the same (a timeout after sending,
        # a dropped connection, a 5xx that can come after the work): a create may have made its
        # record. False: it certainly was not (never sent, or refused before processing).
        self.ambiguous = ambiguous


class SyncEnqueueFailed(UpstreamUnavailable):
    code = "sync_enqueue_failed"
    default_message = "Some sync messages could not be queued."


class TokenRefused(UpstreamError):
    """ServiceNow answered 401 to a token it had just issued: the OAuth user cannot use the API
    (locked out, missing roles). Retrying soon cannot help; an admin must look at the instance."""

    default_message = "ServiceNow refused a freshly refreshed access token."


class GrantRevoked(UpstreamError):
    code = "reauthorization_required"
    default_message = "The ServiceNow authorization has expired or was revoked. An admin must re-authorize."


HTTP_STATUS: dict[type[AppError], int] = {
    AppError: 500,
    BadRequest: 400,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TicketDeletedInServiceNow: 409,
    TicketNotCreated: 409,
    IdempotencyKeyReused: 422,
    TooManyRequests: 429,
    AuthorizationNotCompleted: 400,
    DependencyNotConfigured: 503,
    Misconfigured: 503,
    UpstreamError: 502,
    UpstreamUnavailable: 503,
    GrantRevoked: 409,
}


def status_for(error: AppError) -> int:
    """The HTTP status of an error: its own entry, else its nearest ancestor's."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_body(error: AppError) -> dict[str, Any]:
    """The `{"error": {"code", "message"}}` body of DESIGN.md section 4."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if isinstance(error, BadRequest) and error.fields:
        body["fields"] = error.fields
    return {"error": body}


def error_headers(error: AppError) -> dict[str, str]:
    if isinstance(error, UpstreamUnavailable | IdempotencyKeyInProgress | TooManyRequests):
        return {"Retry-After": str(error.retry_after)}
    return {}
