"""Response bodies exactly as the instance shapes them.

Table API errors always use ``{"error": {"message", "detail"}, "status": "failure"}`` (facts L115);
the token endpoint uses its own non-RFC body (facts L48-49). Keeping them in one place stops a
handler from inventing a third shape.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

NOT_AUTHENTICATED_MESSAGE = "User Not Authenticated"
NOT_AUTHENTICATED_DETAIL = "Required to provide Auth information"
NO_RECORD_MESSAGE = "No Record found"
NO_RECORD_DETAIL = "Record doesn't exist or ACL restricts the record retrieval"
TRANSACTION_CANCELLED_MESSAGE = "Transaction cancelled: maximum execution time exceeded"
TRANSACTION_CANCELLED_DETAIL = (
    "Transaction cancelled: maximum execution time exceeded Check logs for error trace or enable "
    "glide.rest.debug property to verify REST request processing"
)


def error_response(
    status: int,
    message: str,
    detail: str | None,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The Table API error envelope (facts L115-124)."""
    body = {"error": {"message": message, "detail": detail}, "status": "failure"}
    return web.json_response(body, status=status, headers=headers)


def not_authenticated() -> web.Response:
    """401 for a missing, unknown, expired or revoked bearer token (facts L56)."""
    return error_response(401, NOT_AUTHENTICATED_MESSAGE, NOT_AUTHENTICATED_DETAIL)


def no_record() -> web.Response:
    """404 for a sys_id that does not exist (facts L119)."""
    return error_response(404, NO_RECORD_MESSAGE, NO_RECORD_DETAIL)


def operation_failed() -> web.Response:
    """403: an ACL, business rule or data policy refused the request (the exact body is not in the facts)."""
    return error_response(403, "Operation Failed", "Denied by an ACL, business rule or data policy")


def invalid_table(table: str) -> web.Response:
    """400 for a table the instance does not have; the captured detail is null (facts L120)."""
    return error_response(400, f"Invalid table {table}", None)


def token_error(status: int = 401) -> web.Response:
    """The token endpoint's answer to any bad client, code or refresh token (facts L48-49)."""
    return web.json_response({"error_description": "access_denied", "error": "server_error"}, status=status)


def rate_limit_exceeded(limit: int, headers: Mapping[str, str]) -> web.Response:
    """429 from a requests-per-hour rule (facts L135-137)."""
    detail = f"Rate limit of {limit} requests per hour for Table API exceeded"
    return error_response(429, "Rate limit exceeded", detail, headers=headers)
