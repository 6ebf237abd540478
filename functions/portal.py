"""The portal: `GET /api/portal` (the page), `GET /api/portal/assets/{file}` (its scripts and style
sheet) and `GET /api/portal/config` (what the page may offer), served by the app on the API's
origin.

The page is static HTML, CSS and ES modules under `functions/static/portal/`: no framework, no
build step, nothing from another site, and its Content-Security-Policy allows nothing else. The
page and its files hold no data, so the functions are anonymous; in Azure Easy Auth signs the
admin in before the page loads, and every call the page makes is checked like any other.
`config` tells the page whether it may offer local sign-in (a principal header the page builds),
which the app trusts only with `LOCAL_DEV=true`.
"""

from __future__ import annotations

from pathlib import Path

import azure.functions as func

from functions._http import anonymous, json_response
from functions._static import CSS, HTML, JS, asset_response, file_response, security_headers
from shared.settings import get_settings

bp = func.Blueprint()

STATIC = Path(__file__).resolve().parent / "static" / "portal"
# name in the URL -> (file under STATIC, media type; every file is UTF-8)
ASSETS: dict[str, tuple[str, str]] = {
    name: (name, CSS if name.endswith(".css") else JS)
    for name in (
        "portal.css",
        "app.js",
        "api.js",
        "ui.js",
        "signin.js",
        "home.js",
        "setup.js",
        "actions.js",
        "rules.js",
        "tickets.js",
        "ticket-form.js",
    )
}
# Nothing inline, nothing from elsewhere; forms are sent by script, never by the browser.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = security_headers(CONTENT_SECURITY_POLICY)


@bp.function_name("portal_page")
@bp.route(route="portal", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def portal_page(req: func.HttpRequest) -> func.HttpResponse:
    return file_response(STATIC / "index.html", HTML, HEADERS)


@bp.function_name("portal_asset")
@bp.route(route="portal/assets/{file}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def portal_asset(req: func.HttpRequest) -> func.HttpResponse:
    return asset_response(ASSETS, req.route_params.get("file", ""), STATIC, HEADERS, "the portal")


@bp.function_name("portal_config")
@bp.route(route="portal/config", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def portal_config(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"localSignIn": get_settings().local_dev}, headers={"Cache-Control": "no-store"})
