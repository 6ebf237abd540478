"""CORS, answered by the app itself: which web pages may call the API from a browser.

The app, not the platform (`siteConfig.cors`), answers CORS, so that the local host and Azure
behave the same, and the headers a page needs (`Idempotency-Key`, the local principal header)
and may read (`Location`, `Retry-After`, `X-Request-Id`) are decided in one place. An allowed
origin is the app's own or one of `CORS_ALLOWED_ORIGINS` (the same rule that lets a page change
data, see `_http.check_origin`).

- A preflight (`OPTIONS` on any route, `functions/cors.py`) from an allowed origin is 204 with
  `Access-Control-Allow-Origin` (that origin), `-Allow-Methods`, `-Allow-Headers` and `-Max-Age`;
  from any other origin it is 403 `forbidden_origin` without any `Access-Control-*` header. An
  `OPTIONS` without `Origin` is not a CORS request: 204 with `Allow`.
- Every other answer to an allowed origin carries `Access-Control-Allow-Origin` and
  `Access-Control-Expose-Headers`. `Access-Control-Allow-Credentials` is never sent: a page of
  another origin calls with a bearer token, not with the session cookie.
- Every answer carries `Vary: Origin`, so a cache never hands one origin's answer to another.

The app's own origin is the request's scheme and host as the App Service front end passes them:
`X-Forwarded-Proto` and `X-Forwarded-Host` when each is one plain value (a comma list was added
to by a client, so it is ignored), else the request URL's scheme and the `Host` header.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import azure.functions as func

from shared.errors import ForbiddenOrigin, Misconfigured
from shared.identity import PRINCIPAL_HEADER
from shared.settings import get_settings
from shared.untrusted import origin_of

ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE")
ALLOWED_HEADERS = ("Content-Type", "Idempotency-Key", "Authorization")
EXPOSED_HEADERS = ("Location", "Retry-After", "X-Request-Id")
# How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours).
MAX_AGE_S = 3600
ALLOW_ORIGIN = "Access-Control-Allow-Origin"


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


def allowed_origin(req: func.HttpRequest) -> str | None:
    """The request's `Origin` (normalised) when pages of that origin may use the API; None when
    there is no `Origin` or it is not allowed.

    Raises:
        Misconfigured: the origin is not the app's own and the settings cannot be read.
    """
    header = req.headers.get("origin")
    claimed = origin_of(header) if header is not None else None
    if claimed is None:
        return None
    if claimed == own_origin(req) or claimed in get_settings().allowed_origins:
        return claimed
    return None


def preflight(req: func.HttpRequest) -> func.HttpResponse:
    """The answer to an `OPTIONS` request (the module docstring says which).

    Raises:
        ForbiddenOrigin: `Origin` is present and not allowed.
    """
    if req.headers.get("origin") is None:
        return func.HttpResponse(status_code=204, headers={"Allow": ", ".join((*ALLOWED_METHODS, "OPTIONS"))})
    origin = allowed_origin(req)
    if origin is None:
        raise ForbiddenOrigin()
    allowed_headers = [*ALLOWED_HEADERS, *([PRINCIPAL_HEADER.upper()] if get_settings().local_dev else [])]
    headers = {
        ALLOW_ORIGIN: origin,
        "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
        "Access-Control-Allow-Headers": ", ".join(allowed_headers),
        "Access-Control-Max-Age": str(MAX_AGE_S),
    }
    return func.HttpResponse(status_code=204, headers=headers)


def add_cors_headers(req: func.HttpRequest, response: func.HttpResponse) -> None:
    """`Vary: Origin` on every answer; for an allowed origin, what its page may read."""
    vary = response.headers.get("Vary")
    if not vary:
        response.headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Origin"
    if req.method.upper() == "OPTIONS" or ALLOW_ORIGIN in response.headers:
        return  # a preflight carries its own headers, and a refused one none
    try:
        origin = allowed_origin(req)
    except Misconfigured:
        origin = None  # the answer is the 503 that names the settings; no page of another origin reads it
    if origin is not None:
        response.headers[ALLOW_ORIGIN] = origin
        response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
